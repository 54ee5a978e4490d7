from django.apps import AppConfig


class ExecutionsConfig(AppConfig):
    name = "executions"

    def ready(self):
        from executions import limits, metrics

        # Fail at start-up, not at the first run, when a limit is set to nonsense.
        limits.current()
        metrics.register_collectors()

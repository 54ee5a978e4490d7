from typing import Any

from django.apps import AppConfig
from django.db.models.signals import pre_delete


def end_credentials(sender: type, instance: Any, **kwargs: Any) -> None:
    """Deleting an account deletes its runs, scripts and keys by cascade; its refresh tokens
    would outlive it with no user, so they are blacklisted first. A signal rather than
    User.delete(): the admin deletes users in bulk."""
    instance.end_credentials()


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self) -> None:
        pre_delete.connect(end_credentials, sender=self.get_model("User"))

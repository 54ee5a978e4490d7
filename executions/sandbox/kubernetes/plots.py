"""matplotlib's backend in a pod (MPLBACKEND=module://integr8s_plots, shipped beside the script
in the run's ConfigMap): Agg for drawing; plt.show() saves each open figure as a PNG in the
outputs folder, which the wrapper sends back when the run ends. The local sandbox's prelude
registers the same backend in memory. Imported only when a script uses matplotlib."""

import os

from matplotlib.backends.backend_agg import *  # noqa: F403  # FigureCanvas, FigureManager, ...

OUTPUTS = os.environ.get("INTEGR8S_OUTPUTS", "/tmp/outputs")
_shown = 0


def show(*args, **kwargs):  # matplotlib calls it so
    global _shown
    import matplotlib.pyplot as plt

    for number in plt.get_fignums():
        _shown += 1
        plt.figure(number).savefig(os.path.join(OUTPUTS, f"figure-{_shown}.png"))
    plt.close("all")

# Runs first in every local sandbox, as `python -u -B -I -S -c <this file> SCRIPT_FD START_FD
# GO_FD`, in the __main__ module the script then runs in (so it leaves no names behind, and has no
# docstring: a script's __doc__ stays None). Python 3.8+, the standard library's builtins only.
#
# 1. Supply what -S leaves out of site but scripts use: exit, quit and help (not the
#    interactive copyright/credits/license printers, whose set-up imports os). Skipping site
#    saves about 2.5 ms a run.
# 2. Wait for the script on the pipe SCRIPT_FD: a warm sandbox starts before its script exists.
# 3. Say "started" on the pipe START_FD and close it, before any of the script runs: the
#    supervisor learns that the sandbox came up from a channel the script can never write.
#    Then wait for its "go" on GO_FD: it takes hold of the sandbox's /tmp first (the output
#    files are collected from it), which a script that ends in a millisecond took with it.
# 4. Put the runtime's package set (SITE in command.py, bound read-only when one was built)
#    at the end of sys.path, after the standard library; a script that dies of an import the
#    set does not have is told, under its traceback, which packages there are.
# 5. Register matplotlib's backend (Agg; plt.show() saves PNGs into /tmp/outputs) and make
#    /tmp/outputs, whose files the platform keeps with the run.
# 6. Keep the script at /scripts/script.py for tracebacks' source lines, then run it as
#    `python /scripts/script.py` would: as __main__, with __file__ and sys.argv set, and
#    tracebacks that start at the script.
import _sitebuiltins
import builtins
import posix
import sys

builtins.exit = _sitebuiltins.Quitter("exit", "Ctrl-D (i.e. EOF)")
builtins.quit = _sitebuiltins.Quitter("quit", "Ctrl-D (i.e. EOF)")
builtins.help = _sitebuiltins._Helper()


# Defaults, not globals: the names below are gone from __main__ once the script runs.
def _excepthook(kind, value, tb, show=sys.__excepthook__, sys=sys, listdir=posix.listdir):
    # Drop this file's own frame; newer Pythons print value.__traceback__, so set it too.
    if tb is not None:
        tb = tb.tb_next
        value = value.with_traceback(tb)
    show(kind, value, tb)
    if issubclass(kind, ModuleNotFoundError):
        try:
            names = sorted(
                n.split("-")[0].lower().replace("_", "-")
                for n in listdir("/opt/integr8s/site")
                if n.endswith(".dist-info")
            )
        except OSError:
            names = []
        offered = ", ".join(names) if names else "none"
        sys.stderr.write(
            f"\nThis runtime has the standard library and these packages: {offered}.\n"
        )


class _Plots(type(sys)):  # type: ignore[misc]  # ModuleType, without importing types
    # matplotlib's backend (MPLBACKEND=module://integr8s_plots): Agg for drawing, imported only
    # when a script uses matplotlib; plt.show() saves each open figure as a PNG in
    # /tmp/outputs, which the platform collects when the run ends.
    shown = 0

    def __getattr__(self, name):
        # matplotlib reads the backend's names through vars() too: copy Agg's in, once.
        from matplotlib.backends import backend_agg

        self.__dict__.update(
            (key, value) for key, value in vars(backend_agg).items() if not key.startswith("__")
        )
        self.__dict__["show"] = type(self).show.__get__(self)  # ours, not Agg's
        return getattr(backend_agg, name)

    def show(self, *args, **kwargs):
        import matplotlib.pyplot as plt

        for number in plt.get_fignums():
            type(self).shown += 1
            plt.figure(number).savefig(f"/tmp/outputs/figure-{type(self).shown}.png")
        plt.close("all")


sys.modules["integr8s_plots"] = _Plots("integr8s_plots")
sys.excepthook = _excepthook
sys.path.append("/opt/integr8s/site")
try:
    posix.mkdir("/tmp/outputs")  # what the script leaves here is kept with the run
except OSError:
    pass
_script_fd, _start_fd, _go_fd = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
sys.argv[:] = ["/scripts/script.py"]
with open(_script_fd, "rb") as _file:
    _source = _file.read()
posix.write(_start_fd, b"S")
posix.close(_start_fd)
if posix.read(_go_fd, 1) != b"G":  # the supervisor went away: nothing of the script runs
    posix._exit(70)
posix.close(_go_fd)
# The file is for tracebacks only: a script too big for /scripts still runs. Then read-only,
# like everything outside /tmp.
try:
    with open("/scripts/script.py", "wb") as _copy:
        _copy.write(_source)
    posix.chmod("/scripts/script.py", 0o444)
except OSError:
    pass
posix.chmod("/scripts", 0o555)
_code = compile(_source, "/scripts/script.py", "exec", dont_inherit=True)
__file__ = "/scripts/script.py"
del builtins, sys, _sitebuiltins, posix, _excepthook, _Plots, _script_fd, _start_fd, _go_fd
del _file, _source
globals().pop("_copy", None)  # absent when /scripts was full
exec(globals().pop("_code"))

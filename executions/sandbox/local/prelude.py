# Runs first in every local sandbox, as `python -u -B -I -S -c <this file> SCRIPT_FD START_FD`,
# in the __main__ module the script then runs in (so it leaves no names behind, and has no
# docstring: a script's __doc__ stays None). Python 3.8+, the standard library's builtins only.
#
# 1. Supply what -S leaves out of site but scripts use: exit, quit and help (not the
#    interactive copyright/credits/license printers, whose set-up imports os). Skipping site
#    saves about 2.5 ms a run.
# 2. Wait for the script on the pipe SCRIPT_FD: a warm sandbox starts before its script exists.
# 3. Say "started" on the pipe START_FD and close it, before any of the script runs: the
#    supervisor learns that the sandbox came up from a channel the script can never write.
# 4. Put the runtime's package set (SITE in command.py, bound read-only when one was built)
#    at the end of sys.path, after the standard library; a script that dies of an import the
#    set does not have is told, under its traceback, which packages there are.
# 5. Keep the script at /scripts/script.py for tracebacks' source lines, then run it as
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


sys.excepthook = _excepthook
sys.path.append("/opt/integr8s/site")
_script_fd, _start_fd = int(sys.argv[1]), int(sys.argv[2])
sys.argv[:] = ["/scripts/script.py"]
with open(_script_fd, "rb") as _file:
    _source = _file.read()
posix.write(_start_fd, b"S")
posix.close(_start_fd)
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
del builtins, sys, _sitebuiltins, posix, _excepthook, _script_fd, _start_fd, _file, _source
globals().pop("_copy", None)  # absent when /scripts was full
exec(globals().pop("_code"))

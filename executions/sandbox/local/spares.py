"""Warm spares: launchers started ahead for the (runtime, limits) recipes of recent runs.

A run takes a spare whose sandbox and interpreter have already started inside a fresh cgroup,
renames that cgroup after the run and sends the script. Each sandbox still serves one run
only; what is saved is waiting: joining a cgroup v1 costs an RCU grace period (about 10 ms
here), and bubblewrap and the interpreter start while the previous run goes. A refiller
thread tops the pool up after every take.
"""

import logging
import threading
import time
from collections.abc import Callable

from executions.sandbox.local.launcher import Launcher

log = logging.getLogger(__name__)

RECIPES = 3  # how many (runtime, limits) recipes keep spares: the versions in recent use
SPARE_PREFIX = "spare-"


class SparePool:
    def __init__(self, per_recipe: int, make: Callable[[tuple], Launcher]):
        """per_recipe spares for each recent recipe, made by make(recipe)."""
        self.per_recipe = per_recipe
        self._make = make
        self._pool: list[Launcher] = []
        self._recipes: list[tuple] = []  # newest first
        self._lock = threading.Lock()
        self._wanted = threading.Condition(self._lock)  # the refiller waits on it
        self._refiller: threading.Thread | None = None
        self._closed = False

    def take(self, recipe: tuple) -> Launcher | None:
        """A spare for recipe taken out of the pool (not checked: see LocalBackend), or None;
        either way recipe is now the first kept ready and the refiller is woken."""
        taken = None
        with self._lock:
            taken = next((la for la in self._pool if la.recipe == recipe), None)
            if taken is not None:
                self._pool.remove(taken)
        self.want(recipe)
        return taken

    def want(self, recipe: tuple) -> None:
        if not self.per_recipe:
            return
        with self._lock:
            if self._closed:
                return
            if recipe in self._recipes:
                self._recipes.remove(recipe)
            self._recipes.insert(0, recipe)
            del self._recipes[RECIPES:]
            if self._refiller is None:
                self._refiller = threading.Thread(
                    target=self._refill_loop, name="sandbox-spares", daemon=True
                )
                self._refiller.start()
            self._wanted.notify()

    def held(self) -> list[Launcher]:
        with self._lock:
            return list(self._pool)

    def _missing(self) -> tuple[tuple | None, list[Launcher]]:
        """(a recipe short of spares or None, spares of recipes no longer kept); locked."""
        stale = [la for la in self._pool if la.recipe not in self._recipes]
        for launcher in stale:
            self._pool.remove(launcher)
        for recipe in self._recipes:
            if sum(la.recipe == recipe for la in self._pool) < self.per_recipe:
                return recipe, stale
        return None, stale

    def _refill_loop(self) -> None:
        while True:
            with self._lock:
                recipe, stale = self._missing()
                while recipe is None and not stale and not self._closed:
                    self._wanted.wait()
                    recipe, stale = self._missing()
                if self._closed:
                    return
            for launcher in stale:
                launcher.discard()
            if recipe is None:
                continue
            try:
                launcher = self._make(recipe)
            except Exception:
                log.exception("local sandbox could not start a spare launcher")
                time.sleep(1.0)  # runs still get fresh launchers meanwhile
                continue
            with self._lock:
                if not self._closed:
                    self._pool.append(launcher)
                    continue
            launcher.discard()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, []
            refiller, self._refiller = self._refiller, None
            self._wanted.notify_all()
        if refiller is not None and refiller is not threading.current_thread():
            refiller.join(timeout=5)
        for launcher in pool:
            launcher.discard()

"""Output as a terminal shows it: ANSI SGR colours, `\\r` rewriting the line, stdout and stderr
(and typed input) in the order they came, as escaped HTML spans the stylesheet colours.

Display only: what is stored is the script's bytes as text, and nothing here decides anything.
"""

import re
from collections.abc import Iterable
from itertools import islice

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from executions.templatetags.executions import neutral_paths

register = template.Library()

# A CSI sequence (ESC [ params letter), a lone ESC with one more character, or a control
# character that moves the cursor.
TOKEN = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])|\x1b.?|\r|\n")
BASIC = ["black", "red", "green", "yellow", "blue", "magenta", "cyan", "white"]
# Lines are rewritten one character at a time only when `\r` went back over them; a line
# longer than this (a runaway progress bar) is cut, so the page stays cheap to render.
MAX_LINE = 10_000


class Screen:
    """Lines of [text, class] runs and a cursor column: enough of a terminal for printed
    output (SGR attributes, carriage return, erase to end of line).

    Each step costs what it writes, never the whole line: output is appended to the last
    line's runs until a `\r` sends the cursor back over it; from then until the line ends,
    that line is a list of (character, class) cells written in place. A rewrite that rebuilt
    the line took ~5 ms on a 10,000-character one, and the output cap holds ~500,000 of them."""

    def __init__(self) -> None:
        self.lines: list[list[list[str]]] = [[]]
        self.cells: list[tuple[str, str]] | None = None  # the last line, once rewritten
        self.width = 0  # of the last line
        self.col = 0
        self.sgr: dict[str, str] = {}

    def css(self, stream: str) -> str:
        classes = [f"t-{stream}"] + [f"t-{v}" for v in self.sgr.values()]
        return " ".join(classes)

    def feed(self, text: str, stream: str = "stdout") -> None:
        pos = 0
        for match in TOKEN.finditer(text):
            if match.start() > pos:
                self.write(text[pos : match.start()], self.css(stream))
            pos = match.end()
            token = match.group(0)
            if token == "\n":
                self.end_line()
                self.lines.append([])
                self.width = self.col = 0
            elif token == "\r":
                self.col = 0
            elif match.group(2) == "m":
                self.select(match.group(1))
            elif match.group(2) == "K":
                self.erase_right()
        if pos < len(text):
            self.write(text[pos:], self.css(stream))

    def select(self, params: str) -> None:
        codes = [int(p) if p.isdigit() else 0 for p in (params or "0").split(";")]
        i = 0
        while i < len(codes):
            code = codes[i]
            if code == 0:
                self.sgr = {}
            elif code == 1:
                self.sgr["bold"] = "bold"
            elif code == 3:
                self.sgr["italic"] = "italic"
            elif code == 4:
                self.sgr["underline"] = "underline"
            elif code == 22:
                self.sgr.pop("bold", None)
            elif code == 23:
                self.sgr.pop("italic", None)
            elif code == 24:
                self.sgr.pop("underline", None)
            elif 30 <= code <= 37:
                self.sgr["fg"] = f"fg-{BASIC[code - 30]}"
            elif 90 <= code <= 97:
                self.sgr["fg"] = f"fg-bright-{BASIC[code - 90]}"
            elif 40 <= code <= 47:
                self.sgr["bg"] = f"bg-{BASIC[code - 40]}"
            elif 100 <= code <= 107:
                self.sgr["bg"] = f"bg-bright-{BASIC[code - 100]}"
            elif code == 39:
                self.sgr.pop("fg", None)
            elif code == 49:
                self.sgr.pop("bg", None)
            elif code in (38, 48):  # 256-colour and true-colour: skip their arguments
                i += 2 if codes[i + 1 : i + 2] == [5] else 4
            i += 1

    def write(self, text: str, css: str) -> None:
        if self.cells is None and self.col >= self.width:  # the common case: appending
            line = self.lines[-1]
            if line and line[-1][1] == css:
                line[-1][0] += text
            else:
                line.append([text, css])
            self.col = self.width = self.width + len(text)
            return
        cells = self.rewritten()
        cells[self.col : self.col + len(text)] = [(ch, css) for ch in text]
        del cells[MAX_LINE:]
        self.col = min(self.col + len(text), MAX_LINE)
        self.width = len(cells)

    def erase_right(self) -> None:
        if self.col < self.width:
            del self.rewritten()[self.col :]
            self.width = self.col

    def rewritten(self) -> list[tuple[str, str]]:
        """The last line as cells, to write over."""
        if self.cells is None:
            line = ((ch, c) for run, c in self.lines[-1] for ch in run)
            self.cells = list(islice(line, MAX_LINE))
        return self.cells

    def end_line(self) -> None:
        if self.cells is not None:
            self.lines[-1] = regroup(self.cells)
            self.cells = None

    def html(self, plain: str = "t-stdout") -> SafeString:
        """The screen as HTML; runs styled only as `plain` are bare text."""
        self.end_line()
        rows = []
        for line in self.lines:
            rows.append(
                "".join(
                    escape(text) if c == plain else f'<span class="{c}">{escape(text)}</span>'
                    for text, c in line
                )
            )
        return mark_safe("\n".join(rows))  # noqa: S308 (every piece of text is escaped)


def regroup(cells: list[tuple[str, str]]) -> list[list[str]]:
    runs: list[list[str]] = []
    for ch, css in cells:
        if runs and runs[-1][1] == css:
            runs[-1][0] += ch
        else:
            runs.append([ch, css])
    return runs


def render(pieces: Iterable[tuple[str, str]], plain: str = "stdout") -> SafeString:
    """[(stream, text), ...] in the order printed as terminal HTML; streams are CSS classes
    (t-stdout, t-stderr, t-input), and text of the `plain` stream without style is bare."""
    screen = Screen()
    for stream, text in pieces:
        screen.feed(text, stream)
    return screen.html(f"t-{plain}")


@register.filter
def terminal(text: str, stream: str = "stdout") -> SafeString:
    """One stream's text as a terminal shows it."""
    return render([(stream, text or "")], plain=stream)


@register.filter
def console(pieces: Iterable[tuple[str, str]]) -> SafeString:
    """The live console: stderr with neutral paths as in the result, each run of one stream
    joined first (the worker's batches may cut a traceback's path in two)."""
    joined: list[tuple[str, str]] = []
    for stream, text in pieces:
        if joined and joined[-1][0] == stream:
            joined[-1] = (stream, joined[-1][1] + text)
        else:
            joined.append((stream, text))
    return render((s, neutral_paths(t) if s == "stderr" else t) for s, t in joined)

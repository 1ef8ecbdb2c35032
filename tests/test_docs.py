"""The documentation cannot drift from the code: every command shown in README.md and
docs/*.md answers `--help`, every flag it uses is one the command knows, every `make` target
exists, every relative link resolves, and the README stays short and links every page.

Commands are read from the fenced code blocks (except ```text and ```python ones): `python -m
MODULE ...`, `torchrun ... -m MODULE ...`, `python path/to/script.py ...` and `make TARGET`.
A module of ours that cannot be imported, a command that does not exit 0 on `--help`, or a
module that is neither ours nor in FOREIGN fails: nothing is skipped silently.
"""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
RESULTS_INDEX = ROOT / "results" / "README.md"
PAGES = [p for p in (README, *DOCS, RESULTS_INDEX) if p.exists()]
README_LIMIT = 8000
OURS = ("two_stream", "flow_tools", "benchmarks")
# modules the pages show but that are not ours to check (installing and testing)
FOREIGN = {"pip", "pytest", "venv", "ruff"}
NOT_COMMANDS = {"text", "python"}  # fences that show output, layouts or library code
SEPARATORS = {";", "&&", "||", "|", "&", "(", ")"}


@dataclass(frozen=True)
class Invocation:
    """One documented call: `kind` is "module", "script" or "make"; `args` what follows."""
    kind: str
    name: str
    args: tuple[str, ...]
    where: str

    @property
    def key(self) -> tuple[str, ...]:
        """What `--help` runs: the module or script plus its first positional argument, so
        a subcommand (`train`, `convert`) answers with its own flags."""
        first = self.args[0] if self.args and not self.args[0].startswith("-") else None
        return (self.name,) if first is None else (self.name, first)

    @property
    def flags(self) -> set[str]:
        return {a.split("=", 1)[0] for a in self.args if re.match(r"^--[a-zA-Z]", a)}


def code_blocks(path: Path) -> list[tuple[int, str]]:
    """(first line number, text) of each command block in a Markdown file."""
    blocks, lines = [], path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^\s*```\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        lang, start, body = m.group(1).lower(), i + 2, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith("```"):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise AssertionError(f"{path.name}:{start - 1}: code block never closed")
        i += 1
        if lang not in NOT_COMMANDS:
            blocks.append((start, "\n".join(body)))
    return blocks


def tokens(line: str, where: str) -> list[str]:
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    try:
        return list(lex)
    except ValueError as e:  # unbalanced quotes: the page shows a command that cannot run
        raise AssertionError(f"{where}: cannot parse {line!r}: {e}") from None


def invocations(path: Path) -> list[Invocation]:
    """Every python / torchrun / make call in the page's command blocks."""
    found = []
    for start, block in code_blocks(path):
        text = re.sub(r"\\\n", " ", block)
        for n, line in enumerate(text.splitlines()):
            line = re.sub(r"^\s*\$ ", "", line)
            where = f"{path.relative_to(ROOT)}:{start + n}"
            toks = tokens(line, where)
            commands, cur = [], []
            for t in toks:
                if t in SEPARATORS:
                    commands.append(cur)
                    cur = []
                else:
                    cur.append(t)
            commands.append(cur)
            for cmd in commands:
                found.extend(_calls(cmd, where))
    return found


def _calls(cmd: list[str], where: str) -> list[Invocation]:
    for i, t in enumerate(cmd):
        name = t.rsplit("/", 1)[-1]
        if re.fullmatch(r"python(3(\.\d+)?)?", name) or name == "torchrun":
            rest = cmd[i + 1:]
            if "-m" in rest:
                j = rest.index("-m")
                if name == "torchrun" or j == 0:
                    return [Invocation("module", rest[j + 1], tuple(rest[j + 2:]), where)]
            if name != "torchrun" and rest and rest[0].endswith(".py"):
                return [Invocation("script", rest[0], tuple(rest[1:]), where)]
            raise AssertionError(f"{where}: a {name} call this test does not understand: "
                                 f"{' '.join(cmd)}")
        if t == "make" and i == 0:
            return [Invocation("make", a, (), where) for a in cmd[1:] if not a.startswith("-")]
    return []


ALL = [inv for page in PAGES for inv in invocations(page)]
MODULES = [inv for inv in ALL if inv.kind == "module" and inv.name.split(".")[0] not in FOREIGN]
SCRIPTS = [inv for inv in ALL if inv.kind == "script"]
HELP_KEYS = sorted({inv.key for inv in MODULES} | {(inv.name,) for inv in MODULES})

DRIVER = r"""
import contextlib, io, json, runpy, sys, traceback
out = []
for key in json.loads(sys.argv[1]):
    buf, code = io.StringIO(), "returned without exiting"
    try:
        sys.argv = [key[0], *key[1:], "--help"]
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            runpy.run_module(key[0], run_name="__main__", alter_sys=True)
    except SystemExit as e:
        code = e.code
    except BaseException:
        code = "raised"
        buf.write(traceback.format_exc())
    out.append([key, code, buf.getvalue()])
sys.stdout.write("\n@@HELP@@" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def helps() -> dict[tuple[str, ...], tuple[object, str]]:
    """`--help` of every documented module (and subcommand), in one subprocess: torch is
    imported once instead of once per command."""
    r = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(HELP_KEYS)], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert "@@HELP@@" in r.stdout, f"help driver died (exit {r.returncode}):\n{r.stderr[-3000:]}"
    rows = json.loads(r.stdout.rsplit("@@HELP@@", 1)[1])
    return {tuple(key): (code, text) for key, code, text in rows}


def _check_help(inv: Invocation, code: object, text: str) -> None:
    shown = " ".join(inv.key)
    assert code in (0, None), f"{inv.where}: `{shown} --help` exited {code!r}:\n{text[-3000:]}"
    assert "usage:" in text, f"{inv.where}: `{shown} --help` printed no usage:\n{text[-2000:]}"
    unknown = sorted(f for f in inv.flags
                     if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", text))
    assert not unknown, f"{inv.where}: `{shown}` has no flag {', '.join(unknown)}"


def test_pages_show_commands():
    assert DOCS, "docs/ has no pages"
    assert len(MODULES) >= 20 and SCRIPTS, "the command extraction found too little"
    for page in DOCS:
        assert any(inv.where.startswith(f"docs/{page.name}:") for inv in ALL), \
            f"docs/{page.name} shows no command"


def test_unknown_modules_fail():
    """A module that is neither ours nor a known tool is a typo or a moved module."""
    strange = [f"{inv.where}: {inv.name}" for inv in MODULES
               if inv.name.split(".")[0] not in OURS]
    assert not strange, "documented modules that are not ours:\n" + "\n".join(strange)


@pytest.mark.e2e
@pytest.mark.parametrize("inv", MODULES, ids=lambda inv: f"{inv.where}:{' '.join(inv.key)}")
def test_documented_module_answers_help(inv: Invocation, helps):
    code, text = helps[inv.key]
    _check_help(inv, code, text)
    bare = helps[(inv.name,)]
    assert bare[0] in (0, None), f"`python -m {inv.name} --help` exited {bare[0]!r}"


@pytest.mark.parametrize("inv", SCRIPTS, ids=lambda inv: f"{inv.where}:{inv.name}")
def test_documented_script_answers_help(inv: Invocation):
    """Scripts run as `python path/script.py` from the repository root, in their own process:
    sys.path then starts at the script's folder, as it does for a user."""
    path = ROOT / inv.name
    assert path.is_file(), f"{inv.where}: {inv.name} does not exist"
    r = subprocess.run([sys.executable, inv.name, *inv.key[1:], "--help"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    _check_help(inv, r.returncode, r.stdout + r.stderr)


def test_make_targets_exist():
    targets = set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", (ROOT / "Makefile").read_text(),
                             re.M))
    missing = [f"{inv.where}: make {inv.name}" for inv in ALL
               if inv.kind == "make" and inv.name not in targets]
    assert not missing, "documented make targets missing from the Makefile:\n" + \
        "\n".join(missing)


def test_readme_is_short_and_starts_with_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert len(text) <= README_LIMIT, f"README.md has {len(text)} characters (at most " \
        f"{README_LIMIT}): move the detail to docs/"
    first = code_blocks(README)[0][1]
    assert [ln.split("#")[0].strip() for ln in first.splitlines()] == ["make demo", "make test"]


def test_readme_links_every_docs_page():
    links = set(re.findall(r"\]\((docs/[^)#\s]+)", README.read_text(encoding="utf-8")))
    missing = [f"docs/{p.name}" for p in DOCS if f"docs/{p.name}" not in links]
    assert not missing, f"README.md does not link {', '.join(missing)}"


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    h = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return h.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {slug(h) for h in re.findall(r"^#{1,6}\s+(.*)$", text, re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path):
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: {', '.join(broken)}"


def test_results_index_lists_every_folder():
    assert RESULTS_INDEX.exists(), "results/README.md (the index of the result folders) is missing"
    index = RESULTS_INDEX.read_text(encoding="utf-8")
    missing = [d.name for d in sorted((ROOT / "results").iterdir())
               if d.is_dir() and f"{d.name}/" not in index]
    assert not missing, f"results/README.md does not index {', '.join(missing)}"


def test_every_page_starts_from_a_command():
    """Each docs page opens with the command a user types: its first block comes before
    its first section."""
    for page in DOCS:
        lines = page.read_text(encoding="utf-8").splitlines()
        first_block = next(i for i, ln in enumerate(lines) if ln.startswith("```"))
        first_section = next((i for i, ln in enumerate(lines) if ln.startswith("## ")),
                             len(lines))
        assert first_block < first_section, f"docs/{page.name} does not start from a command"

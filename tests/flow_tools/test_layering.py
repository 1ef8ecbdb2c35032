"""Who may import whom (GUIDE: flow_tools < two_stream.data < ...), checked on the source with
the AST, in-function imports included: a lazy import is still a dependency."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imports(rel: str) -> set[str]:
    """Absolute names of every module `rel` imports (relative imports resolved)."""
    path = ROOT / rel
    package = ".".join(Path(rel).with_suffix("").parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] \
                if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out |= {mod} | {f"{mod}.{a.name}" for a in node.names}
    return out


def test_flow_tools_imports_nothing_above_it():
    for path in sorted((ROOT / "flow_tools").glob("*.py")):
        above = {m for m in imports(path.relative_to(ROOT).as_posix())
                 if m.split(".")[0] in ("two_stream", "benchmarks")}
        assert not above, (path.name, above)


def test_the_batched_backend_and_the_data_layer_do_not_import_the_extraction_command():
    """batched.py once took nine names from extract.py (which imported it back), and the
    split readers the whole command for two names: both now go through rawframes/videos."""
    for rel in ("flow_tools/batched.py", "flow_tools/videos.py", "flow_tools/rawframes.py",
                "flow_tools/params.py", "two_stream/data/splits.py",
                "two_stream/data/frames.py"):
        found = imports(rel) & {"flow_tools.extract", "flow_tools.extraction",
                                "flow_tools.shards"}
        assert not found, (rel, found)


def test_the_layout_and_parameters_sit_below_everything_in_flow_tools():
    """rawframes.py and params.py are what every other module builds on: only the base
    modules below them."""
    base = {"flow_tools.errors", "flow_tools.tmpfiles", "flow_tools.quantize",
            "flow_tools.params"}
    for rel in ("flow_tools/rawframes.py", "flow_tools/params.py"):
        # `from .x import name` yields both `flow_tools.x` and `flow_tools.x.name`
        ours = {m for m in imports(rel) if m.startswith("flow_tools.")}
        assert all(m in base or m.rsplit(".", 1)[0] in base for m in ours), (rel, ours)

"""Structure guards: camel_jax modules import only downward through the layers below, without cycles, and none
grows past ~400 lines."""
import ast
import pathlib

PKG = pathlib.Path(__file__).resolve().parent.parent / "camel_jax"
MAX_LINES = 450  # "~400": a little slack, never a 1,000-line model file

# The pipeline, bottom to top: a package may import its own modules and packages of lower layers only; two packages
# of one layer never import each other. Every top-level package or module of camel_jax must be listed.
LAYERS = (
    {"model", "cli", "storage"},  # presets, Flax LLaMA, partition rules, meshes, tokenizer; the CLI convention; run paths
    {"data", "params_io"},  # instruction data; parameter checkpoints
    {"convert"},  # Hugging Face / llama2.c conversion
    {"infer"},  # the engine (slots, KV cache, sampling) and what serves through it
    {"generate", "serve"},  # static-batch decoding, and the generate CLI on the engine; the OpenAI server CLI
    {"train"},  # the training run (shows greedy samples through generate)
    {"evaluate", "plan"},  # benchmarks on the engine; compile-only planning of the train step
    {"human_eval"},  # the human study: app, records, statistics
    {"report"},  # one HTML page over evaluation folders and the human study
)


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _graph() -> dict[str, set[str]]:
    mods = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph = {}
    for name, path in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            deps |= {t for t in targets if t in mods and t != name}
        graph[name] = deps
    return graph


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for dep in sorted(graph[node]):
            if dep.startswith(node + "."):
                continue  # a package's __init__ re-exporting its own submodule is not a cycle
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack + [dep]))
            if dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _upward(graph: dict[str, set[str]]) -> list[str]:
    layer_of = {name: i for i, names in enumerate(LAYERS) for name in names}
    unlisted = sorted({_top(m) for m in graph} - set(layer_of) - {""})
    assert not unlisted, f"top-level camel_jax packages missing from LAYERS: {unlisted}"
    bad = []
    for mod, deps in graph.items():
        for dep in deps:
            a, b = _top(mod), _top(dep)
            if a == b or b == "":
                continue
            if a == "" or layer_of[b] >= layer_of[a]:
                bad.append(f"{mod} (layer {layer_of.get(a)}) imports {dep} (layer {layer_of[b]})")
    return sorted(bad)


def test_imports_only_go_downward():
    bad = _upward(_graph())
    assert not bad, "imports that do not go downward:\n" + "\n".join(bad)


def test_layering_check_catches_upward_and_sideways_imports():
    graph = _graph()
    graph["camel_jax.model.llama"] = graph["camel_jax.model.llama"] | {"camel_jax.train.step"}
    graph["camel_jax.data.pipeline"] = graph["camel_jax.data.pipeline"] | {"camel_jax.params_io"}
    assert _upward(graph) == ["camel_jax.data.pipeline (layer 1) imports camel_jax.params_io (layer 1)",
                              "camel_jax.model.llama (layer 0) imports camel_jax.train.step (layer 5)"]


def test_modules_stay_small():
    big = {str(p.relative_to(PKG.parent)): n for p in PKG.rglob("*.py")
           if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"

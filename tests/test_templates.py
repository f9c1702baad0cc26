"""open-instruct's weighted instruction templates: exact table, reference-equivalent draws, few-shot layout."""
import collections
import random

from camel_jax.data import templates as T


def test_template_tables_are_the_reference_ones():
    assert len(T.TEMPLATES_WITH_INPUT) == 14 and len(T.TEMPLATES_WITHOUT_INPUT) == 14
    for table in (T.TEMPLATES_WITH_INPUT, T.TEMPLATES_WITHOUT_INPUT):
        assert abs(sum(w for _, _, w in table) - 1.0) < 1e-9
        assert sorted(w for _, _, w in table) == [0.05] * 10 + [0.1] * 3 + [0.2]
    assert T.TEMPLATES_WITH_INPUT[0] == ("{instruction}\n\n{input}\n\n", "{output}", 0.2)
    assert T.TEMPLATES_WITH_INPUT[-1][0].startswith("Below is an instruction that describes a task, paired with an "
                                                     "input that provides further context.")
    assert T.TEMPLATES_WITH_INPUT[-1][0].endswith("### Input:\n{input}\n\n### Response:")
    assert T.TEMPLATES_WITHOUT_INPUT[2] == ("{instruction}", "\n{output}", 0.1)
    assert ("Plase answer the following request: {instruction}\nAnswer:", "{output}", 0.05) in \
        T.TEMPLATES_WITHOUT_INPUT
    for p, c, _ in T.TEMPLATES_WITH_INPUT:
        assert "{instruction}" in p and "{input}" in p and "{output}" in c
    for p, c, _ in T.TEMPLATES_WITHOUT_INPUT:
        assert "{instruction}" in p and "{input}" not in p and "{output}" in c


def _reference_encode(instruction, input, output):
    """The reference's own call pattern: the *global* random stream."""
    if input is not None and input.strip() != "":
        table = T.TEMPLATES_WITH_INPUT
        p, c, _ = random.choices(table, weights=[w for _, _, w in table])[0]
        return p.format(instruction=instruction.strip(), input=input.strip()), c.format(output=output.strip())
    table = T.TEMPLATES_WITHOUT_INPUT
    p, c, _ = random.choices(table, weights=[w for _, _, w in table])[0]
    return p.format(instruction=instruction.strip()), c.format(output=output.strip())


def test_private_rng_reproduces_the_global_seeded_stream():
    items = [(f" Do thing {i} ", "" if i % 3 else f" input {i}\n", f" out {i} ") for i in range(200)]
    random.seed(42)
    expected = [_reference_encode(*it) for it in items]
    rng = random.Random(42)
    got = [tuple(T.encode_instruction_example(*it, rng=rng).values()) for it in items]
    assert got == expected
    # and the global stream is untouched by our calls
    random.seed(1)
    a = random.random()
    random.seed(1)
    T.encode_instruction_example("x", "", "y", rng=random.Random(0))
    assert random.random() == a


def test_weights_drive_the_choice_frequencies():
    rng = random.Random(0)
    counts = collections.Counter(T.encode_instruction_example("I", "", "O", rng=rng)["prompt"] for _ in range(20000))
    assert abs(counts["I\n\n"] / 20000 - 0.2) < 0.02
    assert abs(counts["I"] / 20000 - 0.1) < 0.015
    assert abs(counts["Instruction: I\nOutput:"] / 20000 - 0.05) < 0.01
    assert len(counts) == 14


def test_strip_and_completion_templates():
    rng = random.Random(3)
    for _ in range(50):
        ex = T.encode_instruction_example("  Say hi \n", "  \n ", "\n hello  ", rng=rng)
        assert ex["completion"] in ("hello", "\nhello")
        assert ex["prompt"].count("Say hi") == 1 and "Say hi \n" not in ex["prompt"]
        assert "{" not in ex["prompt"]
    fixed = T.encode_instruction_example(" A ", " B ", " C ", rng=rng, random_template=False)
    assert fixed == {"prompt": "A\n\nB\n\n", "completion": "C"}
    assert T.encode_instruction_example("A", None, "C", rng=rng, random_template=False)["prompt"] == "A\n\n"


def test_few_shot_layout_is_exact():
    ex = T.encode_few_shot_example(" Define. ", [{"input": " a ", "output": " 1"}, {"input": "b", "output": "2 "}],
                                   " q ", " ans ")
    assert ex == {"prompt": "Define.\n\nInput:\na\nOutput:\n1\n\nInput:\nb\nOutput:\n2\n\nInput:\nq\nOutput:\n",
                  "completion": "ans"}
    assert T.single_turn("p", "c") == [{"role": "user", "content": "p"}, {"role": "assistant", "content": "c"}]

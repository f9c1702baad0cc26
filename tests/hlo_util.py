"""Reading matmul precisions out of HLO text: which element types each dot (or convolution) multiplies."""
import re

_DEF = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = (\w+)\[([^\]]*)\]", re.M)
_DOT = re.compile(r"= (\w+)\[([^\]]*)\]\S* (?:dot|convolution)\(%?([\w.\-]+), %?([\w.\-]+)\)")


def dots(hlo_text: str) -> list[tuple[str, str, str, int]]:
    """(output type, lhs type, rhs type, output rank) of every dot/convolution. Operand types are looked up from the
    instructions defining them (HLO names are unique in a module), since pre-optimization HLO prints operands by
    name only."""
    types = {name: t for name, t, _ in _DEF.findall(hlo_text)}
    out = []
    for line in hlo_text.splitlines():
        m = _DOT.search(line)
        if m:
            rank = len([d for d in m.group(2).split(",") if d.strip()])
            out.append((m.group(1), types[m.group(3)], types[m.group(4)], rank))
    return out

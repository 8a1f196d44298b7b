"""Writes the PyTorch reference for the engine's label smoothing: tests/fixtures/label_smoothing.txt.

Usage (PyTorch from PyPI; CI does not need it, the fixture is committed):

    python3 -m venv venv && venv/bin/pip install torch
    venv/bin/python tests/reference/label_smoothing.py

For each case, torch.nn.functional.cross_entropy(logits, labels, label_smoothing=s) (mean over the
rows) and its gradient with respect to the logits, float32 on the CPU. One record a line, fields
separated by spaces, floats as repr(float(x)):

    case ROWS CLASSES SMOOTHING
    logits v0 .. v{ROWS*CLASSES-1}
    labels l0 .. l{ROWS-1}
    loss L
    grad g0 .. g{ROWS*CLASSES-1}
"""
import torch
import torch.nn.functional as F

CASES = [(7, 3, 0.1), (32, 10, 0.1), (16, 10, 0.25), (5, 10, 1.0)]

torch.manual_seed(0)
lines = [f"# torch {torch.__version__}: F.cross_entropy(logits, labels, label_smoothing=s), tests/reference/label_smoothing.py"]
for rows, classes, s in CASES:
    logits = (torch.randn(rows, classes) * 3).requires_grad_()
    labels = torch.randint(0, classes, (rows,))
    loss = F.cross_entropy(logits, labels, label_smoothing=s)
    loss.backward()
    floats = lambda t: " ".join(repr(float(v)) for v in t.flatten().tolist())
    lines += [
        f"case {rows} {classes} {s}",
        f"logits {floats(logits.detach())}",
        "labels " + " ".join(str(int(v)) for v in labels),
        f"loss {float(loss.detach())!r}",
        f"grad {floats(logits.grad)}",
    ]
with open("tests/fixtures/label_smoothing.txt", "w") as f:
    f.write("\n".join(lines) + "\n")

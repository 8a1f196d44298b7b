"""Writes the golden fixtures the engine is tested against: tests/fixtures/<network>.safetensors.

Usage (PyTorch and safetensors from PyPI; CI does not need them, the fixtures are committed):

    python3 -m venv venv && venv/bin/pip install torch safetensors
    venv/bin/python tests/reference/make_golden.py ../shared/mnist

For each of the tutorial's networks (the modules of pytorch_tutorial.py, with the tutorial's attribute names),
with torch.manual_seed(0) initialisation and the first 16 training images of MNIST, a fixture holds:

    init.<param>     the initial state_dict (f32, PyTorch's names and shapes)
    images, labels   the batch as stored in the IDX files (u8, [16, 784] and [16])
    logits, loss     the forward pass on the normalized batch ((x / 255 - 0.1307) / 0.3081) and
                     the mean cross-entropy
    grad.<param>     every parameter's gradient of that loss
    step3.<param>    the parameters after three steps of torch.optim.SGD(lr=0.01, momentum=0.5)
                     on the same batch

and the metadata names the network, the PyTorch version and the recipe. All in float32 on the CPU,
deterministic algorithms on.
"""
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from pytorch_tutorial import Inception, ResNet, SimpleCnn, idx

BATCH, LR, MOMENTUM, STEPS = 16, 0.01, 0.5, 3


def fixture(model, images, labels):
    x = ((images.float() / 255 - 0.1307) / 0.3081).reshape(-1, 1, 28, 28)
    y = labels.long()
    tensors = {f"init.{k}": v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    for step in range(STEPS):
        opt.zero_grad()
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        if step == 0:
            tensors["logits"] = logits.detach().clone()
            tensors["loss"] = loss.detach().reshape(1).clone()
            tensors.update({f"grad.{k}": p.grad.clone() for k, p in model.named_parameters()})
        opt.step()
    tensors.update({f"step3.{k}": v.clone() for k, v in model.state_dict().items()})
    tensors["images"] = images.reshape(BATCH, 784).contiguous()
    tensors["labels"] = labels.contiguous()
    return tensors


def main():
    data = sys.argv[1] if len(sys.argv) > 1 else "../shared/mnist"
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    images = idx(f"{data}/train-images-idx3-ubyte.gz")[:BATCH].clone()
    labels = idx(f"{data}/train-labels-idx1-ubyte.gz")[:BATCH].clone()
    for name, net in [("simple_cnn", SimpleCnn), ("inception", Inception), ("resnet", ResNet)]:
        torch.manual_seed(0)
        tensors = fixture(net(), images, labels)
        meta = {"network": name, "torch": torch.__version__, "batch": str(BATCH), "lr": str(LR),
                "momentum": str(MOMENTUM), "steps": str(STEPS),
                "normalization": "(x / 255 - 0.1307) / 0.3081"}
        path = f"tests/fixtures/{name}.safetensors"
        save_file(tensors, path, metadata=meta)
        print(f"{path}: loss {tensors['loss'].item():.6f}, {len(tensors)} tensors")


if __name__ == "__main__":
    main()

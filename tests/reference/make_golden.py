"""Writes the golden fixtures the engine is tested against: tests/fixtures/<network>.safetensors.

Usage (PyTorch and safetensors from PyPI; CI does not need them, the fixtures are committed):

    python3 -m venv venv && venv/bin/pip install torch safetensors
    venv/bin/python tests/reference/make_golden.py ../shared/mnist [--nets simple_cnn,inception,resnet,fast_cnn]

--nets writes only the fixtures named (default: all four). For each of the tutorial's networks (the
modules of pytorch_tutorial.py, with the tutorial's attribute names), with torch.manual_seed(0)
initialisation and the first 16 training images of MNIST, a fixture holds:

    init.<param>     the initial state_dict (f32, PyTorch's names and shapes)
    images, labels   the batch as stored in the IDX files (u8, [16, 784] and [16])
    logits, loss     the forward pass on the normalized batch ((x / 255 - 0.1307) / 0.3081) and
                     the mean cross-entropy
    grad.<param>     every parameter's gradient of that loss
    step3.<param>    the parameters after three steps of torch.optim.SGD(lr=0.01, momentum=0.5)
                     on the same batch

and the metadata names the network, the PyTorch version and the recipe.

fast_cnn.safetensors (FastCnn, batch norm, in training mode: batch statistics, running statistics
updated with momentum 0.1 and the unbiased variance) holds the same images and labels and:

    init.<key>       the initial state_dict, bn1/bn2's running_mean, running_var and
                     num_batches_tracked (i64, shape []) included
    logits, loss     the first training-mode forward pass and its mean cross-entropy
    grad.<param>     every parameter's gradient of that loss
    stats1.<key>     bn1/bn2's running_mean, running_var and num_batches_tracked right after
                     that forward pass
    step3.<key>      the whole state_dict after three steps on the same batch of
                     torch.optim.AdamW(lr=0.003, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01,
                     foreach=False) under OneCycleLR(max_lr=0.003, total_steps=10) (defaults
                     otherwise: pct_start 0.3, cos, betas[0] cycled 0.95 -> 0.85, div_factor 25,
                     final_div_factor 1e4), each step opt.step() then sched.step()
    eval.logits      after those three steps, the eval-mode forward pass (running statistics)

with metadata optimizer, schedule and steps in place of lr and momentum. All in float32 (but
num_batches_tracked) on the CPU, deterministic algorithms on.
"""
import argparse

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from pytorch_tutorial import FastCnn, Inception, ResNet, SimpleCnn, idx

BATCH, LR, MOMENTUM, STEPS = 16, 0.01, 0.5, 3
FAST_LR, FAST_TOTAL_STEPS = 0.003, 10
NORMALIZATION = "(x / 255 - 0.1307) / 0.3081"


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


def fast_cnn_fixture(model, images, labels):
    x = ((images.float() / 255 - 0.1307) / 0.3081).reshape(-1, 1, 28, 28)
    y = labels.long()
    model.train()
    tensors = {f"init.{k}": v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=FAST_LR, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=0.01, foreach=False)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=FAST_LR, total_steps=FAST_TOTAL_STEPS)
    for step in range(STEPS):
        opt.zero_grad()
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        if step == 0:
            tensors["logits"] = logits.detach().clone()
            tensors["loss"] = loss.detach().reshape(1).clone()
            tensors.update({f"grad.{k}": p.grad.clone() for k, p in model.named_parameters()})
            tensors.update({f"stats1.{k}": v.clone() for k, v in model.state_dict().items()
                            if k.startswith(("bn1.running", "bn2.running", "bn1.num", "bn2.num"))})
        opt.step()
        sched.step()
    tensors.update({f"step3.{k}": v.clone() for k, v in model.state_dict().items()})
    model.eval()
    with torch.no_grad():
        tensors["eval.logits"] = model(x).clone()
    tensors["images"] = images.reshape(BATCH, 784).contiguous()
    tensors["labels"] = labels.contiguous()
    return tensors


NETS = {"simple_cnn": SimpleCnn, "inception": Inception, "resnet": ResNet, "fast_cnn": FastCnn}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir", nargs="?", default="../shared/mnist")
    p.add_argument("--nets", default=",".join(NETS))
    a = p.parse_args()
    names = a.nets.split(",")
    for name in names:
        if name not in NETS:
            p.error(f"unknown network {name!r}; one of {', '.join(NETS)}")
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    images = idx(f"{a.dir}/train-images-idx3-ubyte.gz")[:BATCH].clone()
    labels = idx(f"{a.dir}/train-labels-idx1-ubyte.gz")[:BATCH].clone()
    for name in names:
        torch.manual_seed(0)
        meta = {"network": name, "torch": torch.__version__, "batch": str(BATCH), "steps": str(STEPS),
                "normalization": NORMALIZATION}
        if name == "fast_cnn":
            tensors = fast_cnn_fixture(NETS[name](), images, labels)
            meta.update({"optimizer": f"adamw lr={FAST_LR} betas=0.9,0.999 eps=1e-8 weight_decay=0.01",
                         "schedule": f"onecycle total_steps={FAST_TOTAL_STEPS}"})
        else:
            tensors = fixture(NETS[name](), images, labels)
            meta.update({"lr": str(LR), "momentum": str(MOMENTUM)})
        path = f"tests/fixtures/{name}.safetensors"
        save_file(tensors, path, metadata=meta)
        print(f"{path}: loss {tensors['loss'].item():.6f}, {len(tensors)} tensors")


if __name__ == "__main__":
    main()

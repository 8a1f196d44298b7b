"""Writes the PyTorch reference for the engine's optimizers and learning-rate schedules:
tests/fixtures/optimizers.txt.

Usage (PyTorch from PyPI; CI does not need it, the fixture is committed):

    python3 -m venv venv && venv/bin/pip install torch
    venv/bin/python tests/reference/optimizers.py

then prints, for every case, the largest relative difference between PyTorch's learning rates and
momenta and their closed forms (float64), a check on the closed forms the engine implements.

The fixture is plain ASCII text, one record a line, fields separated by single spaces, floats
written with repr(float(x)) so they round-trip exactly (f32 tensors as their float values):

    # comment                   header lines (PyTorch version, this format)
    case NAME
    optimizer sgd lr=.. momentum=.. weight_decay=.. nesterov=0|1
    optimizer adam|adamw lr=.. beta1=.. beta2=.. eps=.. weight_decay=..
    schedule constant | step step_size=S gamma=G | cosine t_max=T eta_min=E
           | onecycle total_steps=T pct_start=P div_factor=D final_div_factor=F
                      base_momentum=B max_momentum=M          (max_lr is the optimizer's lr)
    warmup W                    linear warm-up over W steps, 0 for none
    steps N
    lr v0 .. v{N-1}             param_groups[0]['lr'] just before step k's optimizer.step()
    momentum v0 .. v{N-1}       SGD's momentum, or Adam/AdamW's betas[0], at the same moment
    init x0 .. x36              the initial parameter (f32, 37 values)       } cases with
    grad K g0 .. g36            the gradient given at step K (0-based)        } parameters
    param K p0 .. p36           the parameter after step K's optimizer.step() } only
    end

A case is one float32 parameter p of 37 values (torch.manual_seed(case index), p = torch.randn(37))
and one optimizer on [p] (torch.optim.SGD with dampening=0, Adam or AdamW, foreach=False). At step k
the gradient is 0.5 * torch.randn(37) + 0.25 * p (the pull of a quadratic loss, taken from the
parameter before the step), then the lr and momentum are recorded, opt.step() runs, the parameter
is recorded and the scheduler steps. Schedules: constant = none; step = StepLR; cosine =
CosineAnnealingLR; onecycle = OneCycleLR(anneal_strategy='cos', cycle_momentum=True). A warm-up
W >= 2 is LinearLR(start_factor=1/W, end_factor=1, total_iters=W-1), constructed before the main
scheduler and chained with it by ChainedScheduler([warmup, main]), so that lr(t) = main(t) *
min(1, (t+1)/W). Schedule-only cases (no init/grad/param lines) step the optimizer on a dummy
parameter with zero gradients. All in float32 on the CPU, deterministic algorithms on.
"""
import math

import torch

SIZE = 37
PATH = "tests/fixtures/optimizers.txt"

SGD = lambda lr, momentum, wd=0.0, nesterov=False: (  # noqa: E731
    "sgd", dict(lr=lr, momentum=momentum, weight_decay=wd, nesterov=nesterov))
ADAM = lambda kind, lr, b1, b2, eps, wd: (kind, dict(lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd))  # noqa: E731

# name, optimizer, schedule, warm-up, steps, with parameters
CASES = [
    ("sgd_tutorial", SGD(0.01, 0.5), ("constant", {}), 0, 6, True),
    ("sgd_nesterov_step", SGD(0.1, 0.9, 0.0005, True), ("step", dict(step_size=3, gamma=0.5)), 0, 10, True),
    ("adam_cosine", ADAM("adam", 0.001, 0.9, 0.999, 1e-8, 0.0), ("cosine", dict(t_max=10, eta_min=0.0)), 0, 10,
     True),
    ("adam_l2_warmup", ADAM("adam", 0.002, 0.8, 0.99, 1e-6, 0.01), ("constant", {}), 4, 10, True),
    ("adamw_onecycle", ADAM("adamw", 0.003, 0.9, 0.999, 1e-8, 0.05),
     ("onecycle", dict(total_steps=20, pct_start=0.3, div_factor=25.0, final_div_factor=10000.0,
                       base_momentum=0.85, max_momentum=0.95)), 0, 20, True),
    ("sgd_onecycle", SGD(0.1, 0.9),
     ("onecycle", dict(total_steps=20, pct_start=0.25, div_factor=10.0, final_div_factor=100.0,
                       base_momentum=0.8, max_momentum=0.9)), 0, 20, True),
    ("sgd_cosine_warmup", SGD(0.05, 0.9, 0.0001), ("cosine", dict(t_max=12, eta_min=0.0)), 3, 12, True),
    ("onecycle_long", ADAM("adam", 0.01, 0.9, 0.999, 1e-8, 0.0),
     ("onecycle", dict(total_steps=938, pct_start=0.3, div_factor=25.0, final_div_factor=10000.0,
                       base_momentum=0.85, max_momentum=0.95)), 0, 938, False),
    ("cosine_warmup_long", SGD(0.1, 0.9), ("cosine", dict(t_max=1000, eta_min=0.0)), 100, 1000, False),
    ("step_long", SGD(0.1, 0.5), ("step", dict(step_size=300, gamma=0.1)), 0, 1000, False),
    ("cosine_eta_min", SGD(0.1, 0.9), ("cosine", dict(t_max=500, eta_min=0.001)), 0, 500, False),
]


def fmt(x):
    return repr(float(x))


def floats(values):
    return " ".join(fmt(v) for v in values)


def optimizer(kind, args, params):
    if kind == "sgd":
        return torch.optim.SGD(params, lr=args["lr"], momentum=args["momentum"], dampening=0,
                               weight_decay=args["weight_decay"], nesterov=args["nesterov"], foreach=False)
    cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
    return cls(params, lr=args["lr"], betas=args["betas"], eps=args["eps"], weight_decay=args["weight_decay"],
               amsgrad=False, foreach=False)


def scheduler(opt, lr, schedule, warmup):
    kind, s = schedule
    assert not (warmup and kind == "onecycle")
    chain = []
    if warmup >= 2:
        chain.append(torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0 / warmup, end_factor=1.0,
                                                       total_iters=warmup - 1))
    if kind == "step":
        chain.append(torch.optim.lr_scheduler.StepLR(opt, step_size=s["step_size"], gamma=s["gamma"]))
    elif kind == "cosine":
        chain.append(torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=s["t_max"], eta_min=s["eta_min"]))
    elif kind == "onecycle":
        chain.append(torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=lr, total_steps=s["total_steps"], pct_start=s["pct_start"], anneal_strategy="cos",
            cycle_momentum=True, base_momentum=s["base_momentum"], max_momentum=s["max_momentum"],
            div_factor=s["div_factor"], final_div_factor=s["final_div_factor"]))
    if not chain:
        return None
    return torch.optim.lr_scheduler.ChainedScheduler(chain) if warmup >= 2 else chain[0]


def momentum_of(group):
    return group["momentum"] if "momentum" in group else group["betas"][0]


def run(index, case):
    name, (kind, args), schedule, warmup, steps, with_params = case
    torch.manual_seed(index)
    p = torch.randn(SIZE) if with_params else torch.zeros(1)
    p.requires_grad_(True)
    init = p.detach().clone()
    opt = optimizer(kind, args, [p])
    sched = scheduler(opt, args["lr"], schedule, warmup)
    lrs, moms, grads, params = [], [], [], []
    for _ in range(steps):
        if with_params:
            g = (0.5 * torch.randn(SIZE) + 0.25 * p.detach()).to(torch.float32)
        else:
            g = torch.zeros_like(p)
        p.grad = g.clone()
        group = opt.param_groups[0]
        lrs.append(float(group["lr"]))
        moms.append(float(momentum_of(group)))
        opt.step()
        grads.append(g)
        params.append(p.detach().clone())
        if sched is not None:
            sched.step()
    lines = [f"case {name}"]
    if kind == "sgd":
        lines.append(f"optimizer sgd lr={fmt(args['lr'])} momentum={fmt(args['momentum'])} "
                     f"weight_decay={fmt(args['weight_decay'])} nesterov={int(args['nesterov'])}")
    else:
        b1, b2 = args["betas"]
        lines.append(f"optimizer {kind} lr={fmt(args['lr'])} beta1={fmt(b1)} beta2={fmt(b2)} "
                     f"eps={fmt(args['eps'])} weight_decay={fmt(args['weight_decay'])}")
    skind, s = schedule
    lines.append(" ".join(["schedule", skind] + [f"{k}={v if isinstance(v, int) else fmt(v)}" for k, v in s.items()]))
    lines += [f"warmup {warmup}", f"steps {steps}", f"lr {floats(lrs)}", f"momentum {floats(moms)}"]
    if with_params:
        lines.append(f"init {floats(init.tolist())}")
        for k in range(steps):
            lines.append(f"grad {k} {floats(grads[k].tolist())}")
            lines.append(f"param {k} {floats(params[k].tolist())}")
    lines.append("end")
    return lines, lrs, moms


def closed_form(case, t):
    """The learning rate and momentum at step t, in float64, as the engine is meant to compute them."""
    _, (kind, args), (skind, s), warmup, _, _ = case
    lr = args["lr"]
    mom = args["momentum"] if kind == "sgd" else args["betas"][0]
    if skind == "step":
        lr = lr * s["gamma"] ** (t // s["step_size"])
    elif skind == "cosine":
        lr = s["eta_min"] + (lr - s["eta_min"]) * (1 + math.cos(math.pi * t / s["t_max"])) / 2
    elif skind == "onecycle":
        total = s["total_steps"]
        initial = lr / s["div_factor"]
        final = initial / s["final_div_factor"]
        peak = s["pct_start"] * total - 1
        anneal = lambda a, b, pct: b + (a - b) / 2 * (1 + math.cos(math.pi * pct))  # noqa: E731
        if t <= peak:
            pct = t / peak
            lr, mom = anneal(initial, lr, pct), anneal(s["max_momentum"], s["base_momentum"], pct)
        else:
            pct = (t - peak) / (total - 1 - peak)
            lr, mom = anneal(lr, final, pct), anneal(s["base_momentum"], s["max_momentum"], pct)
    if warmup >= 2:
        lr *= min(1.0, (t + 1) / warmup)
    return lr, mom


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    out = [f"# PyTorch reference for the engine's optimizers and lr schedules (tests/reference/optimizers.py)",
           f"# torch {torch.__version__}, float32 on the CPU, deterministic algorithms, foreach=False",
           "# format: see the docstring of tests/reference/optimizers.py"]
    print(f"{'case':<20} {'max rel lr':>12} {'max rel momentum':>17}")
    for index, case in enumerate(CASES):
        lines, lrs, moms = run(index, case)
        out += lines
        forms = [closed_form(case, t) for t in range(len(lrs))]
        dlr = max(rel(a, f[0]) for a, f in zip(lrs, forms))
        dmom = max(rel(a, f[1]) for a, f in zip(moms, forms))
        print(f"{case[0]:<20} {dlr:12.3e} {dmom:17.3e}")
    text = "\n".join(out) + "\n"
    text.encode("ascii")
    with open(PATH, "w") as f:
        f.write(text)
    print(f"{PATH}: {len(text)} bytes, {len(out)} lines")


if __name__ == "__main__":
    main()

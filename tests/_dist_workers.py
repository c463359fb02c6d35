"""Worker script for the multi-process tests, run by torchrun (`python -m torch.distributed.run`):

    torchrun --nproc_per_node 2 tests/_dist_workers.py CASE DIR

reads DIR/inputs.pt, computes this rank's share and writes DIR/rank<r>.pt.
"""
import sys

import torch
import torch.distributed as dist


def ntxent(rank, world, inputs):
    from workbench.losses import nt_xent

    n = len(inputs["z1"]) // world
    a = inputs["z1"][rank * n:(rank + 1) * n].clone().requires_grad_()
    b = inputs["z2"][rank * n:(rank + 1) * n].clone().requires_grad_()
    loss = nt_xent(a, b, inputs["tau"])
    loss.backward()
    return {"loss": loss.detach(), "ga": a.grad, "gb": b.grad}


def bn_model():
    """A SimCLR-shaped model with batch-norm: the case where per-process statistics would change the result."""
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
                               torch.nn.Linear(16, 8))


def bn_ntxent(rank, world, inputs):
    from workbench.losses import nt_xent
    from workbench.nn.globalbn import convert_global_batchnorm

    model = bn_model()
    model.load_state_dict(inputs["state"])
    convert_global_batchnorm(model)  # what the trainer does for SimCLR under DDP
    n = len(inputs["x1"]) // world
    a, b = (inputs[k][rank * n:(rank + 1) * n] for k in ("x1", "x2"))
    z = model(torch.cat([a, b]))  # one forward pass over both views, as SimCLR
    loss = nt_xent(z[:n], z[n:], inputs["tau"])
    loss.backward()
    return {"loss": loss.detach(), "grads": [p.grad for p in model.parameters()],
            "running_mean": model[1].running_mean.clone()}


def sinkhorn(rank, world, inputs):
    from workbench.losses.swav import sinkhorn_knopp

    n = len(inputs["scores"]) // world
    return {"codes": sinkhorn_knopp(inputs["scores"][rank * n:(rank + 1) * n], eps=0.05, iters=3, distributed=True)}


if __name__ == "__main__":
    case, out = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    inputs = torch.load(f"{out}/inputs.pt", weights_only=True)
    result = {"ntxent": ntxent, "sinkhorn": sinkhorn, "bn_ntxent": bn_ntxent}[case](rank, world, inputs)
    torch.save(result, f"{out}/rank{rank}.pt")
    dist.barrier()  # every rank's collectives (incl. the backward of the gather) are done before teardown
    dist.destroy_process_group()

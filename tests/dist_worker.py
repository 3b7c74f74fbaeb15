"""Run under torchrun by test_distributed: each rank feeds its own data to one EMA quantiser step."""
import sys

import torch
import torch.distributed as dist
from safetensors.torch import save_file

from vqtool.quantize import VectorQuantizer

dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
vq = VectorQuantizer(16, 4, decay=0.9)
vq.initialised.fill_(True)
all_data = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(1)) * 2
vq.train()(all_data[rank:rank + 1])
if rank == 0:
    save_file({k: v.contiguous() for k, v in vq.state_dict().items()}, sys.argv[1])
dist.destroy_process_group()

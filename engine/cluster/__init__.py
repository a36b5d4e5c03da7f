"""The hardware a run meets: this machine's GPUs through NVML (`gpus`; readings, free
devices, process counts) and the other machines of a multi-node run (`rendezvous`;
torchrun's options, the process group, what the ranks tell each other). Depends on
`engine.core` alone.
"""

"""Models: HRU layers, the HSSM stack, memory strategies, and the training API.

    layers.py   HRU (generic), LinearHRU, NonlinearHRU, Dense, GLU, BatchNorm, dropout; retrace_error
    hssm.py     Block and HSSM; trainable(), count_parameters(), cast()
    memory.py   RecomputeBlocks, TimeChunks (memory strategies of a block)
    streaming.py Streaming (the whole stack, forward and backward over time chunks; RHEL)
    api.py      value_and_grad, train_step, init_optimizer, predict, input checks, losses
"""

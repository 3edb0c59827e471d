"""RHEL on imperfect physics: devices that take the integrator's place in a Hamiltonian core (issue #15).

    import hamecho as he
    from hamecho.physical import SimulatedDevice
    device = SimulatedDevice(noise=1e-3, repeats=4, seed=0)
    loss, grads = he.value_and_grad(model, x, y, integrator=device)   # RHEL on the device
    model, opt_state, loss = he.train_step(model, opt_state, x, y, optimizer, integrator=device)
    logits = he.predict(model, x, integrator=device)                   # inference on the device

A device runs the dynamics and reports measured states (``Device.run`` → ``Measurement``); RHEL's local
rule evaluates the model's energy gradients at those states — nothing is differentiated through the
device, and BPTT on a device is refused. ``IdealDevice``: the JAX leapfrog through this path (the
engine's gradients). ``SimulatedDevice``: NumPy, no JAX inside, reached through ``jax.pure_callback``,
with knobs noise, readout_noise, mismatch (+ drift), bits (+ full_scale), damping, model_error (+ model_drift),
repeats; ``SimulatedTwin``: its deterministic physics (damping, model error) in JAX, the BPTT reference of
its loss and its exact twin for ``hamecho.PhysicsAware``.
``HostDevice``: the base to subclass for another simulator or an instrument (docs/physical.md).
``DampedLeapfrog``: the damped model in JAX, for the BPTT gradient a perfect learner of a lossy device
would follow. ``CircuitDevice``: the linear HRU as LC tanks simulated by ngspice (issue #26),
and ``ExactFlow``, its continuous-time model in JAX (the BPTT reference).
``device_from_table``: a device from a ``[device]`` configuration table.
"""
from .circuit import CircuitDevice
from .damped import DampedLeapfrog, damped_leapfrog_step
from .device import Device, IdealDevice, Measurement, measured_estimates
from .exact import ExactFlow
from .host import HostDevice
from .simulated import PHYSICS, NumpyPhysics, SimulatedDevice, physics_for, register_physics
from .table import device_from_table
from .twin import SimulatedTwin, model_error_factors

__all__ = ["CircuitDevice", "DampedLeapfrog", "Device", "ExactFlow", "HostDevice", "IdealDevice", "Measurement",
           "NumpyPhysics", "PHYSICS", "SimulatedDevice", "SimulatedTwin", "damped_leapfrog_step", "device_from_table",
           "measured_estimates", "model_error_factors", "physics_for", "register_physics"]

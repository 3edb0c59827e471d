"""CircuitDevice: the linear HRU as LC tanks simulated by ngspice (issue #26, section 1).

The circuit integrates the HRU's continuous-time dynamics, so "equal to the model" means equal to
``ExactFlow`` (the exact per-step flow, drive held) up to the simulator's truncation error, O(h²) for
the trapezoidal rule at time step h: forward states, the echo's retrace, and RHEL's gradient against
float64 BPTT through ``ExactFlow``. A series resistance makes the circuit the lossy model (forward) and
RHEL departs from every BPTT gradient (the echo no longer retraces).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hamecho as he
from hamecho.core.hamiltonians import LINEAR_HAMILTONIAN, NONLINEAR_HAMILTONIAN
from hamecho.physical import CircuitDevice, ExactFlow, device_from_table
from hamecho.tools.gradcheck import compare_gradients, random_problem

pytestmark = pytest.mark.usefixtures("x64")

P, N, L = 3, 2, 12


@pytest.fixture(scope="module")
def core():
    """θ with one spring-less channel (A = 0: the flux meter), drives (L, N, P)."""
    rng = np.random.default_rng(0)
    theta = {"a": np.array([0.8, 0.3, -0.5]), "steps": rng.uniform(0.0, 1.0, P)}
    return theta, rng.normal(size=(L, N, P))


def exact(theta, drives, resistance=0.0):
    positions, (phi, pi) = ExactFlow(series_resistance=resistance).forward(
        LINEAR_HAMILTONIAN, jax.tree_util.tree_map(jnp.asarray, theta), jnp.asarray(drives))
    return np.asarray(positions), (np.asarray(phi), np.asarray(pi))


def forward(device, theta, drives, state=None):
    state = state or (np.zeros((N, P)), np.zeros((N, P)))
    return device.run_on_host(LINEAR_HAMILTONIAN, theta, drives, state, None, echo=False, run=0, rng=None)


def relative(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_forward_states_equal_the_exact_flow_to_second_order_in_the_time_step(core):
    theta, drives = core
    positions, final = exact(theta, drives)
    errors = {h: relative(forward(CircuitDevice(timestep=h), theta, drives).positions, positions) for h in (0.04, 0.01)}
    assert errors[0.01] < 2e-5
    assert errors[0.04] / errors[0.01] > 8  # trapezoidal: O(h²), 16 in theory
    measured = forward(CircuitDevice(timestep=0.01, steps_per_run=5), theta, drives)  # three analyses back to back
    assert relative(measured.positions, positions) < 2e-5
    assert relative(measured.final_state[1], final[1]) < 2e-5


def test_echo_retraces_with_capacitor_voltage_flipped(core):
    """Forward from rest, then the echo from the final state with the momentum (charge) flipped and the
    drive replayed backwards: back at rest to the simulator's error; Gear's damping retraces worse."""
    theta, drives = core
    scale = np.max(np.abs(exact(theta, drives)[0]))
    misses = {}
    for method in ("trap", "gear"):
        device = CircuitDevice(method=method, timestep=0.01)
        phi, pi = forward(device, theta, drives).final_state
        echo = device.run_on_host(LINEAR_HAMILTONIAN, theta, drives[::-1], (phi, -pi), None, echo=True, run=0,
                                  rng=None)
        misses[method] = max(np.max(np.abs(s)) for s in echo.final_state) / scale
    assert misses["trap"] < 1e-5
    assert misses["gear"] > 2 * misses["trap"]  # measured: 7.5e-7 against 2.8e-7


def test_series_resistance_gives_the_lossy_flow(core):
    theta, drives = core
    lossy = forward(CircuitDevice(timestep=0.01, series_resistance=0.1), theta, drives).positions
    assert relative(lossy, exact(theta, drives, 0.1)[0]) < 2e-5
    assert relative(lossy, exact(theta, drives)[0]) > 1e-2


@pytest.fixture(scope="module")
def hssm():
    model, x, y = random_problem(hru="linear", blocks=1, hidden=4, state=2, length=16, batch=2, in_dim=2, classes=3,
                                 task="classification", output_step=1, step=0.1, seed=3, dtype=jnp.float64,
                                 norm="batch")
    reference = {r: he.value_and_grad(model, x, y, gradient=he.BPTT(), integrator=ExactFlow(series_resistance=r))
                 for r in (0.0, 0.1)}
    return model, x, y, reference


def worst(grads, reference):
    return max(r["rel_err"] for r in compare_gradients(grads, reference))


def test_rhel_on_the_circuit_is_bptt_of_its_continuous_model(hssm):
    """Every array within the simulator's error (trapezoidal, h = 0.01: ~1e-5); the leapfrog model's BPTT,
    a different discretisation, is far off."""
    model, x, y, reference = hssm
    loss, grads = he.value_and_grad(model, x, y, gradient=he.RHEL(eps=1.0), integrator=CircuitDevice(timestep=0.01))
    assert abs(float(loss) - float(reference[0.0][0])) < 1e-6 * abs(float(loss))
    assert worst(grads, reference[0.0][1]) < 1e-4
    assert worst(grads, he.value_and_grad(model, x, y, gradient=he.BPTT())[1]) > 1e-3
    with pytest.warns(UserWarning, match="norm running statistics were never updated"):
        logits = he.predict(model, x, integrator=CircuitDevice(timestep=0.01))
        ideal = he.predict(model, x, integrator=ExactFlow())
    assert relative(np.asarray(logits), np.asarray(ideal)) < 1e-5


def test_a_lossy_circuit_departs_from_every_bptt_gradient(hssm):
    model, x, y, reference = hssm
    grads = he.value_and_grad(model, x, y, gradient=he.RHEL(eps=1.0),
                              integrator=CircuitDevice(timestep=0.01, series_resistance=0.1))[1]
    assert worst(grads, reference[0.0][1]) > 1e-2
    assert worst(grads, reference[0.1][1]) > 1e-2


@pytest.mark.parametrize("keywords,match", [
    (dict(method="euler"), "method must be one of 'trap', 'gear'"),
    (dict(timestep=2.0), "timestep must be at most 1"),
    (dict(timestep=0), "timestep must be a finite number > 0"),
    (dict(reltol=1e-6), "reltol sets ngspice's step control, which works only with adaptive=True"),
    (dict(order=3), "order is Gear's maximum order: use method='gear'"),
    (dict(method="gear", order=7), r"order must be an integer in \[1, 6\]"),
    (dict(series_resistance=-1.0), "series_resistance must be a finite number ≥ 0"),
    (dict(adaptive=1), "adaptive must be True or False"),
    (dict(transition=0.5), "transition must be < 0.5"),
])
def test_bad_settings_are_refused(keywords, match):
    with pytest.raises(ValueError, match=match):
        CircuitDevice(**keywords)


def test_missing_ngspice_says_how_to_install_it(core):
    theta, drives = core
    match = "'no-such-ngspice' was not found: install it with `apt-get install ngspice`"
    with pytest.raises(RuntimeError, match=match):
        forward(CircuitDevice(ngspice="no-such-ngspice"), theta, drives)


def test_only_the_linear_hru_and_only_rhel_whole_sequences(hssm):
    model, x, y, _ = hssm
    device = CircuitDevice()
    with pytest.raises(ValueError, match="runs the linear HRU"):
        theta = {"w": jnp.ones(2), "b": jnp.zeros(2), "alpha": jnp.asarray(0.5), "log_step": jnp.asarray(-2.0)}
        device.forward(NONLINEAR_HAMILTONIAN, theta, jnp.zeros((3, 1, 2)))
    refused = [dict(gradient=he.BPTT()), dict(gradient=he.BPTT(checkpoint_every=4)),
               dict(gradient=he.RHEL(), memory=he.TimeChunks(4)), dict(gradient=he.RHEL(), memory=he.Streaming(4)),
               dict(scan="parallel")]  # the device is the integrator: no parallel scan beside it
    for choices in refused:
        with pytest.raises(ValueError):
            he.value_and_grad(model, x, y, integrator=device, **choices)


def test_device_table_builds_a_circuit():
    table = {"kind": "circuit", "method": "gear", "order": 3, "timestep": 0.01, "series_resistance": 1}
    assert device_from_table(table) == CircuitDevice(method="gear", order=3, timestep=0.01, series_resistance=1.0)
    with pytest.raises(ValueError, match="device.noise: the circuit device has no such key; it belongs to kind = "
                                         "'simulated'"):
        device_from_table({"kind": "circuit", "noise": 0.1})

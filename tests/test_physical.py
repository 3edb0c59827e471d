"""Devices in the integrator's place (issue #15): the ideal device and the all-knobs-off simulation give the
engine's gradients; each knob of SimulatedDevice degrades them the way it must; BPTT is refused; an HSSM
whose cores run on a NumPy device (no autodiff through it) learns; the [device] table is checked.

Core-level problems (one Hamiltonian core, a random cotangent, jitted VJP) keep compilation short; every
random draw is seeded.
"""
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gradient_checks import core_grads, cosine, flat, rel_err

import hamecho as he
from hamecho.core.hamiltonians import LINEAR_HAMILTONIAN, NONLINEAR_HAMILTONIAN, SeparableHamiltonian
from hamecho.physical import (
    DampedLeapfrog,
    HostDevice,
    IdealDevice,
    Measurement,
    SimulatedDevice,
    device_from_table,
)

pytestmark = pytest.mark.usefixtures("x64")

P, L, N = 4, 40, 3
# "direct": a device's two echoes are two separate runs whose step energies are subtracted, which is what the engine
# computes with this rule (to 2e-14). With "auto" (= "quadrature") the engine propagates the echoes' half-difference
# by quadrature instead, another O(ε²)-close estimate: 6e-7 from the device's at ε = 1e-2 on the nonlinear HRU,
# both 1.8e-3 from BPTT there.
EPS = he.RHEL(eps=1e-2, difference="direct")


def _problem(hru: str, seed: int = 0):
    k = jax.random.split(jax.random.PRNGKey(seed), 5)
    if hru == "linear":
        ham = LINEAR_HAMILTONIAN
        theta = {"a": jax.random.uniform(k[0], (P,)), "steps": jax.random.uniform(k[1], (P,))}
    else:
        ham = NONLINEAR_HAMILTONIAN
        theta = {"w": jax.random.uniform(k[0], (P,), minval=0.5, maxval=1.0), "b": jnp.full((P,), 0.1),
                 "alpha": jnp.asarray(0.5), "log_step": jnp.log(jnp.asarray(0.3))}
    drives = jax.random.normal(k[2], (L, N, P))
    cotangents = jax.random.normal(k[3], (L, N, P))
    return ham, theta, drives, cotangents


@pytest.fixture(scope="module")
def problems():
    """Per HRU: the problem, the engine's RHEL gradient (Leapfrog) and BPTT's."""
    out = {}
    for hru in ("linear", "nonlinear"):
        ham, theta, drives, cot = _problem(hru)
        out[hru] = (ham, theta, drives, cot, core_grads(ham, EPS, he.Leapfrog(), theta, drives, cot),
                    core_grads(ham, he.BPTT(), he.Leapfrog(), theta, drives, cot))
    return out


def _on(problems, hru, device, gradient=EPS):
    ham, theta, drives, cot, _, _ = problems[hru]
    return core_grads(ham, gradient, device, theta, drives, cot)


# --- the device path gives the engine's gradients ---------------------------------------------------

@pytest.mark.parametrize("hru", ["linear", "nonlinear"])
def test_ideal_and_all_knobs_off_devices_equal_the_engine(problems, hru):
    """Measured 8e-15 (ideal) and 7e-15 (NumPy through the callback) relative, both HRUs. SimulatedDevice()
    with every knob off is the ideal device reached through the callback path (issue #15: 1e-12)."""
    engine = problems[hru][4]
    assert rel_err(_on(problems, hru, IdealDevice()), engine) < 1e-12
    assert rel_err(_on(problems, hru, SimulatedDevice()), engine) < 1e-12
    # zero-valued knobs are the same device: mismatch 0 is exact whatever the mismatch kind
    assert rel_err(_on(problems, hru, SimulatedDevice(mismatch=0.0, drift=True, noise=0.0)), engine) < 1e-10


def test_one_sided_estimator_on_a_device_equals_the_engine(problems):
    gradient = he.RHEL(eps=1e-2, estimator="one_sided", difference="direct")   # see EPS
    engine = _on(problems, "nonlinear", he.Leapfrog(), gradient)
    assert rel_err(_on(problems, "nonlinear", IdealDevice(), gradient), engine) < 1e-12


def test_hssm_on_devices_through_the_public_api():
    """An HSSM: value_and_grad with integrator=device equals the engine (every array, float64)."""
    model = he.HSSM(in_dim=2, out_dim=3, hidden=5, state=3, blocks=1, hru="nonlinear", step=0.3,
                    key=jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 16, 2))
    y = jnp.array([0, 2])
    loss, engine = he.value_and_grad(model, x, y)
    for device, tolerance in ((IdealDevice(), 1e-12), (SimulatedDevice(), 1e-10)):
        device_loss, grads = he.value_and_grad(model, x, y, integrator=device)
        assert float(device_loss) == pytest.approx(float(loss), rel=1e-13)
        assert rel_err(grads, engine) < tolerance


def test_bptt_on_a_device_is_refused_with_the_reason():
    model = he.HSSM(in_dim=2, out_dim=3, hidden=4, state=2, blocks=1, key=jax.random.PRNGKey(0))
    x, y = jnp.ones((2, 5, 2)), jnp.array([0, 1])
    for device in (IdealDevice(), SimulatedDevice(noise=1e-3)):
        with pytest.raises(ValueError, match="cannot be differentiated by BPTT .a physical device is measured"):
            he.value_and_grad(model, x, y, gradient=he.BPTT(), integrator=device)
    with pytest.raises(ValueError, match="time chunks"):  # a device runs whole sequences
        he.value_and_grad(model, x, y, integrator=IdealDevice(), memory=he.TimeChunks(2))


# --- each knob --------------------------------------------------------------------------------------

def test_cosine_falls_as_noise_grows(problems):
    """Nudges ε·g ~ 1e-2 per step. Measured cosines (nonlinear, seed 0): 0.9999994, 0.967, 0.909."""
    bptt = problems["nonlinear"][5]
    cosines = [cosine(_on(problems, "nonlinear", SimulatedDevice(noise=noise)), bptt) for noise in (1e-6, 1e-3, 1e-2)]
    assert cosines[0] > 1 - 1e-5
    assert cosines[0] > cosines[1] > cosines[2]
    assert cosines[2] < 0.99


def test_averaging_echoes_brings_the_cosine_back(problems):
    """At noise 1e-2 the linear HRU's cosine is 0.59 with one echo pair, 0.986 with 16 (measured)."""
    bptt = problems["linear"][5]
    one, many = (cosine(_on(problems, "linear", SimulatedDevice(noise=1e-2, repeats=n)), bptt) for n in (1, 16))
    assert many > one
    assert 1 - many < (1 - one) / 4


def test_noise_is_reproducible_per_call_and_fresh_for_new_inputs(problems):
    ham, theta, drives, cot, _, _ = problems["nonlinear"]
    device = SimulatedDevice(noise=1e-3, seed=3)
    first = core_grads(ham, EPS, device, theta, drives, cot)
    np.testing.assert_array_equal(flat(first), flat(core_grads(ham, EPS, device, theta, drives, cot)))
    moved = core_grads(ham, EPS, device, theta, drives * (1 + 1e-12), cot)    # e.g. the next training step
    reseeded = core_grads(ham, EPS, SimulatedDevice(noise=1e-3, seed=4), theta, drives, cot)
    for other in (moved, reseeded):
        assert np.max(np.abs(flat(other) - flat(first))) > 1e-4 * np.max(np.abs(flat(first)))


def test_mismatch_error_grows_with_it_and_drift_is_worse(problems):
    """The ± echoes share a fixed mismatch: the error is O(mismatch). A drifting one differs between them,
    so their difference carries mismatch·state on top of ε·g. Measured (linear HRU, max-norm relative
    error): 0.024 at 1e-4 fixed, 2.4 at 1e-2 fixed, 9.9 at 1e-2 drifting."""
    engine = problems["linear"][4]
    small, large = (rel_err(_on(problems, "linear", SimulatedDevice(mismatch=m)), engine) for m in (1e-4, 1e-2))
    drifting = rel_err(_on(problems, "linear", SimulatedDevice(mismatch=1e-2, drift=True)), engine)
    assert 30 < large / small < 300  # linear in the mismatch
    assert drifting > 3 * large


def test_readout_noise_enters_the_measurements_only(problems):
    """Readout noise leaves the dynamics alone: the forward positions' error is the readout noise itself."""
    ham, theta, drives, _, engine, _ = problems["nonlinear"]
    device = SimulatedDevice(readout_noise=1e-3)
    positions, final = device.forward(ham, theta, drives)
    exact, exact_final = IdealDevice().forward(ham, theta, drives)
    np.testing.assert_allclose(final[0], exact_final[0], rtol=0, atol=1e-12)  # the state itself is untouched
    assert 0.5e-3 < float(jnp.std(positions - exact)) < 2e-3
    assert 1e-4 < rel_err(_on(problems, "nonlinear", device), engine) < 0.1


def test_bits_52_match_float64_to_rounding_and_fewer_bits_do_not(problems):
    """full_scale 64: grid spacing 2^-45 at 52 bits (measured rel. err. 5e-14, nonlinear), 2^-17 at 24."""
    engine = problems["nonlinear"][4]
    fine = rel_err(_on(problems, "nonlinear", SimulatedDevice(bits=52)), engine)
    coarse = rel_err(_on(problems, "nonlinear", SimulatedDevice(bits=24)), engine)
    assert fine < 1e-10
    assert coarse > 1e3 * fine


def test_states_saturate_at_full_scale(problems):
    ham, theta, drives, _, _, _ = problems["linear"]  # |φ| reaches 15.7 here
    positions, _ = SimulatedDevice(bits=16, full_scale=4.0).forward(ham, theta, drives)
    assert float(jnp.max(positions)) == 4.0 - 8.0 / 2**16 and float(jnp.min(positions)) == -4.0


def test_damping_departs_from_the_damped_models_bptt_more_as_gamma_L_grows(problems):
    """The paper's negative result (appendix A.3.1), measured: RHEL on a lossy device is not the damped
    model's gradient. Measured (nonlinear, L = 40): rel. err. 0.009, 0.095, 0.71 at γL = 0.04, 0.4, 4."""
    ham, theta, drives, cot, _, _ = problems["nonlinear"]
    errors = []
    for gamma in (1e-3, 1e-2, 1e-1):
        damped_bptt = core_grads(ham, he.BPTT(), DampedLeapfrog(damping=gamma), theta, drives, cot)
        errors.append(rel_err(_on(problems, "nonlinear", SimulatedDevice(damping=gamma)), damped_bptt))
    assert errors[0] < errors[1] < errors[2]
    assert errors[0] > 1e-4 and errors[2] > 0.3


def test_damped_leapfrog_at_zero_damping_is_the_leapfrog(problems):
    ham, theta, drives, cot, _, bptt = problems["nonlinear"]
    damped = core_grads(ham, he.BPTT(), DampedLeapfrog(damping=0.0), theta, drives, cot)
    assert rel_err(damped, bptt) < 1e-13
    with pytest.raises(ValueError, match="SimulatedDevice"):
        _on(problems, "nonlinear", DampedLeapfrog(damping=0.1))  # RHEL on it: the device does that


# --- training on a device nothing can differentiate ------------------------------------------------

def test_an_hssm_on_a_numpy_device_learns():
    """Every core runs in NumPy behind jax.pure_callback (no JVP/VJP rule: autodiff cannot enter), with
    thermal noise and a 24-bit state; RHEL's echo trains it. JapaneseVowels: 9 classes (chance 0.11).
    Against the same device with every gradient that passes through an echo zeroed (only the readout
    after the core learns). Measured: training loss 0.18 against 0.48, test accuracy 0.48 against 0.33."""
    import optax

    from hamecho.data import load
    from hamecho.data.errors import DataNotFoundError
    from hamecho.tools.robustness import echo_dependent

    try:
        data = load("uea/JapaneseVowels")
    except DataNotFoundError:
        pytest.skip("JapaneseVowels needs the aeon package (make install)")
    device = SimulatedDevice(noise=1e-4, bits=24, seed=0)
    x, y = np.asarray(data.x_train, np.float64), data.y_train

    def train(frozen: bool):
        model = he.HSSM(in_dim=12, out_dim=9, hidden=8, state=4, blocks=1, key=jax.random.PRNGKey(0))
        optimizer = optax.adam(1e-2)
        if frozen:
            optimizer = optax.chain(optax.masked(optax.set_to_zero(), echo_dependent(model)), optimizer)
        opt_state = he.init_optimizer(optimizer, model)
        rng = np.random.default_rng(0)
        losses = []
        for _ in range(120):
            rows = rng.choice(len(y), 32, replace=False)
            model, opt_state, loss = he.train_step(model, opt_state, x[rows], y[rows], optimizer,
                                                   gradient=he.RHEL(eps=10.0), integrator=device)
            losses.append(float(loss))
        logits = he.predict(model, np.asarray(data.x_test, np.float64), integrator=device)
        return np.mean(losses[-20:]), float(np.mean(np.argmax(np.asarray(logits), -1) == data.y_test))

    (loss, accuracy), (frozen_loss, frozen_accuracy) = train(False), train(True)
    assert loss < 0.6 * frozen_loss, (loss, frozen_loss)
    assert accuracy > 0.4 and accuracy > frozen_accuracy, (accuracy, frozen_accuracy)


# --- the [device] table, names and errors ---------------------------------------------------------

def test_device_from_table():
    assert device_from_table({"kind": "ideal"}) == IdealDevice()
    table = {"kind": "simulated", "noise": 1e-3, "repeats": 4, "bits": 12, "full_scale": 16, "drift": True,
             "mismatch": 0.01, "seed": 7}
    assert device_from_table(table) == SimulatedDevice(noise=1e-3, repeats=4, bits=12, full_scale=16.0, drift=True,
                                                       mismatch=0.01, seed=7)


@pytest.mark.parametrize("table,match", [
    ({}, "device.kind is missing: one of 'ideal', 'simulated'"),
    ({"kind": "analog"}, "device.kind must be one of 'ideal', 'simulated', 'circuit'; got 'analog'"),
    ({"kind": "ideal", "noise": 0.1}, "device.noise: the ideal device has no knobs"),
    ({"kind": "simulated", "temperature": 1}, "device.temperature is not a device key; the keys are kind, seed, noise"),
    ({"kind": "simulated", "noise": -1}, "device.noise must be a finite number ≥ 0"),
    ({"kind": "simulated", "noise": "1e-3"}, "device.noise must be a finite number"),
    ({"kind": "simulated", "bits": 60}, "device.bits must be at most 53"),
    ({"kind": "simulated", "bits": 8.0}, r"device.bits must be an integer ≥ 2 or None; got 8.0 \(an integer in"),
    ({"kind": "simulated", "repeats": 0}, "device.repeats must be an integer ≥ 1"),
    ({"kind": "simulated", "drift": "yes"}, r"device.drift must be True or False; got 'yes' \(true or false\)"),
    ({"kind": "simulated", "full_scale": 0}, "device.full_scale must be > 0"),
    ({"kind": "simulated", "seed": -2}, "device.seed must be an integer ≥ 0"),
    ("simulated", "device must be a table"),
])
def test_device_table_errors_name_the_key(table, match):
    with pytest.raises(ValueError, match=match):
        device_from_table(table)


def test_devices_are_hashable_values_with_readable_names():
    assert hash(SimulatedDevice(noise=1e-3)) == hash(SimulatedDevice(noise=1e-3))
    assert SimulatedDevice(noise=1e-3) != SimulatedDevice(noise=1e-3, seed=1)
    assert repr(SimulatedDevice(noise=1e-3, repeats=4)) == "SimulatedDevice(noise=0.001, repeats=4, seed=0)"


def test_unknown_hamiltonian_says_how_to_register_physics():
    ham = SeparableHamiltonian(kinetic=LINEAR_HAMILTONIAN.kinetic, potential=LINEAR_HAMILTONIAN.potential,
                               step_size=LINEAR_HAMILTONIAN.step_size, name="my_oscillator")
    _, theta, drives, _ = _problem("linear")
    with pytest.raises(ValueError, match="no NumPy physics for Hamiltonian 'my_oscillator'.*register_physics"):
        SimulatedDevice().forward(ham, theta, drives)


# --- plugging in another device (the example of docs/physical.md) ---------------------------------

@dataclass(frozen=True, kw_only=True)
class MyOscillators(HostDevice):
    """The linear HRU as a bank of oscillators driven from Python (here: simulated in NumPy)."""

    def run_on_host(self, ham, theta, drives, state, nudges, *, echo, run, rng):
        step = 1 / (1 + np.exp(-theta["steps"]))
        stiffness = np.minimum(np.maximum(theta["a"], 0), 0.999 * 4 / step**2)
        q, p = state
        out = np.empty((4,) + drives.shape[:2] + q.shape[-1:])
        for k, u in enumerate(drives):        # an instrument: apply u for a time δ, read the state
            out[2, k] = p
            half = q + 0.5 * step * p
            p = p + step * (-stiffness * half + u)
            q = half + 0.5 * step * p
            out[0, k], out[1, k], out[3, k] = q, half, p
            if nudges is not None:
                p = p + nudges[k]
        return Measurement(*out, (q, p))


def test_a_device_of_ones_own_plugs_in(problems):
    assert rel_err(_on(problems, "linear", MyOscillators()), problems["linear"][4]) < 1e-10

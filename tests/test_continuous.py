"""Continuous-time RHEL: reversibility, RHEL vs adjoint vs autodiff, input validation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hamecho as he
from hamecho import continuous as c

pytestmark = pytest.mark.usefixtures("x64")  # tests/conftest.py


def _init():
    phi0 = jnp.linspace(-0.5, 0.5, c.N_OSC)
    pi0 = jnp.linspace(0.3, -0.2, c.N_OSC)
    return phi0, pi0


def test_leapfrog_retrace_10k_steps():
    task = c.OscillatorTask()
    theta = c.oscillator_params(jax.random.PRNGKey(0))
    phi0, pi0 = _init()
    err = c.retrace_error(task.system(), theta, phi0, pi0, 100.0, 10_000)
    assert err <= 1e-12, err


def test_echo_mirrors_every_forward_state():
    system = c.OscillatorTask().system()
    theta = c.oscillator_params(jax.random.PRNGKey(1))
    phi0, pi0 = _init()
    fwd = c.integrate(system, theta, phi0, pi0, 5.0, 500)
    back = c.echo(system, theta, fwd.phi[-1], fwd.pi[-1], 5.0, 500, 0.0)
    np.testing.assert_allclose(back.phi, fwd.phi[::-1], atol=1e-13)
    np.testing.assert_allclose(back.pi, -fwd.pi[::-1], atol=1e-13)


@pytest.mark.parametrize("zero_init", [True, False])
def test_toy_rhel_adjoint_autodiff_agree(zero_init):
    task = c.OscillatorTask()
    system = task.system()
    theta = c.oscillator_params(jax.random.PRNGKey(2))
    phi0, pi0 = (jnp.zeros(c.N_OSC), jnp.zeros(c.N_OSC)) if zero_init else _init()
    T, n = 10.0, 1000
    rhel = c.rhel_gradient(system, theta, phi0, pi0, T, n, he.RHEL(eps=1e-4))
    adj = c.adjoint_gradient(system, theta, phi0, pi0, T, n)
    auto = c.autodiff_gradient(system, theta, phi0, pi0, T, n)
    assert len(c.flatten(theta)) == 27
    assert c.relative_error(rhel.theta, adj.theta) <= 1e-6
    assert c.relative_error(adj.theta, auto.theta) <= 1e-6
    assert c.relative_error(rhel.theta, auto.theta) <= 1e-6
    for est in (rhel, adj):  # initial-state gradient
        assert c.relative_error((est.phi0, est.pi0), (auto.phi0, auto.pi0)) <= 1e-6
    # Theorem 3.1: the per-step gradient traces coincide, not only their sums.
    np.testing.assert_allclose(c.flatten(rhel.trace), c.flatten(adj.trace),
                               atol=1e-6 * np.abs(c.flatten(adj.trace)).max())
    np.testing.assert_allclose(float(rhel.loss), float(auto.loss), rtol=1e-12)


def test_anharmonic_bias_two_sided_vs_one_sided():
    system = c.OscillatorTask(anharmonic=0.5).system()
    theta = c.oscillator_params(jax.random.PRNGKey(3))
    phi0, pi0 = _init()
    T, n = 5.0, 500
    auto = c.autodiff_gradient(system, theta, phi0, pi0, T, n)
    two = c.rhel_gradient(system, theta, phi0, pi0, T, n, he.RHEL(eps=1e-4))
    assert c.relative_error(two.theta, auto.theta) <= 1e-6
    # O(eps^2) vs O(eps) bias at a large eps
    two_big = c.relative_error(c.rhel_gradient(system, theta, phi0, pi0, T, n, he.RHEL(eps=1e-2)).theta, auto.theta)
    one_big = c.relative_error(
        c.rhel_gradient(system, theta, phi0, pi0, T, n, he.RHEL(eps=1e-2, estimator="one_sided")).theta, auto.theta)
    assert two_big < one_big


def _nonseparable():
    def hamiltonian(phi, pi, theta, u):
        kinetic = 0.5 * jnp.sum(pi**2 * (1.0 + theta["c"] * phi**2)) / jnp.exp(theta["log_m"])
        return kinetic + 0.5 * jnp.sum(theta["k"] * phi**2) - u * phi[0]

    system = c.HamiltonianSystem(
        hamiltonian,
        input_signal=lambda t: 0.5 * jnp.sin(t),
        running_loss=lambda phi, t: 0.5 * (phi[1] - 0.2 * jnp.cos(t)) ** 2,
        separable=False,
    )
    theta = {"c": jnp.array(0.3), "log_m": jnp.array(0.1), "k": jnp.array([1.0, 1.5])}
    return system, theta


def test_nonseparable_implicit_midpoint():
    system, theta = _nonseparable()
    phi0, pi0 = jnp.array([0.4, -0.3]), jnp.array([0.2, 0.1])
    assert c.retrace_error(system, theta, phi0, pi0, 20.0, 2000) <= 1e-12
    T, n = 4.0, 200
    rhel = c.rhel_gradient(system, theta, phi0, pi0, T, n, he.RHEL(eps=1e-4))
    adj = c.adjoint_gradient(system, theta, phi0, pi0, T, n)
    auto = c.autodiff_gradient(system, theta, phi0, pi0, T, n)
    assert c.relative_error(adj.theta, auto.theta) <= 1e-6
    assert c.relative_error(rhel.theta, auto.theta) <= 1e-6
    assert c.relative_error((rhel.phi0, rhel.pi0), (auto.phi0, auto.pi0)) <= 1e-6


def test_odd_in_momentum_is_rejected():
    system = c.HamiltonianSystem(
        lambda phi, pi, theta, u: 0.5 * jnp.sum(phi**2) + theta * jnp.sum(pi**3) + jnp.sum(phi * pi),
        input_signal=lambda t: 0.0 * t,
        running_loss=lambda phi, t: jnp.sum(phi**2),
        separable=False,
    )
    with pytest.raises(ValueError, match="not time-reversal symmetric.*even in the momentum"):
        c.rhel_gradient(system, jnp.array(1.0), jnp.ones(2), jnp.zeros(2), 1.0, 10)
    with pytest.raises(ValueError, match="even in the momentum"):
        c.check_time_reversal(system, jnp.array(1.0), (2,))


def test_false_separable_claim_is_rejected():
    system, theta = _nonseparable()
    import dataclasses
    wrong = dataclasses.replace(system, separable=True)
    with pytest.raises(ValueError, match="separable"):
        c.rhel_gradient(wrong, theta, jnp.ones(2), jnp.zeros(2), 1.0, 10)


def test_echo_state_nudge_has_eps_squared_bias():
    """nudge='echo' (loss gradient read on the echo itself) converges as O(eps^2)."""
    system = c.OscillatorTask().system()
    theta = c.oscillator_params(jax.random.PRNGKey(2))
    phi0, pi0 = _init()
    T, n = 5.0, 500
    auto = c.autodiff_gradient(system, theta, phi0, pi0, T, n)
    errs = [c.relative_error(c.rhel_gradient(system, theta, phi0, pi0, T, n, he.RHEL(eps=eps),
                                             nudge="echo").theta, auto.theta)
            for eps in (1e-2, 1e-3)]
    assert 50 < errs[0] / errs[1] < 200  # O(eps^2)
    assert errs[1] < 1e-4


def test_rhel_takes_the_rhel_object():
    """The gradient method is a hamecho.RHEL (one spelling with the HRUs'); a bare ε or the quadrature rule,
    which the continuous echo does not implement, is refused in one sentence."""
    system = c.OscillatorTask().system()
    theta = c.oscillator_params(jax.random.PRNGKey(2))
    phi0, pi0 = _init()
    with pytest.raises(ValueError, match=r"gradient must be a hamecho.RHEL, such as hamecho.RHEL\(eps=1e-4\)"):
        c.rhel_gradient(system, theta, phi0, pi0, 1.0, 10, 1e-4)
    with pytest.raises(ValueError, match="subtracts the gradients of its two echoes directly"):
        c.rhel_gradient(system, theta, phi0, pi0, 1.0, 10, he.RHEL(eps=1e-4, difference="quadrature"))
    default = c.rhel_gradient(system, theta, phi0, pi0, 1.0, 10)
    direct = c.rhel_gradient(system, theta, phi0, pi0, 1.0, 10, he.RHEL(eps=1e-4, difference="direct"))
    assert c.DEFAULT_RHEL == he.RHEL(eps=1e-4) and default.extras["eps"] == 1e-4
    assert np.array_equal(c.flatten(default.theta), c.flatten(direct.theta))

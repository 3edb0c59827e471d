"""Fixed-point (int64 grid) integrator: bit-exact retrace where float64 is chaotic, RHEL == BPTT."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hamecho
from hamecho import BPTT, RHEL, FixedPointLeapfrog
from hamecho.core.choices import Choices
from hamecho.core.engine import run_core
from hamecho.core.fixed_point import (
    fixed_point_leapfrog_step,
    fixed_point_range,
    from_fixed,
    run_fixed_point_leapfrog,
    to_fixed,
)
from hamecho.core.hamiltonians import NONLINEAR_HAMILTONIAN
from hamecho.core.integrators import run_leapfrog
from hamecho.nn.layers import NonlinearHRU
from hamecho.tools.gradcheck import compare_gradients, random_problem

FIXED = FixedPointLeapfrog()


pytestmark = pytest.mark.usefixtures("x64")  # tests/conftest.py


def _inputs(shape, seed=1):
    return jax.random.normal(jax.random.PRNGKey(seed), shape, jnp.float64)


def _nonlinear_layer(step, seed=0):
    return NonlinearHRU(4, 3, key=jax.random.PRNGKey(seed), step=step, dtype=jnp.float64)


# --- exact reversibility ----------------------------------------------------------------------------

def test_nonlinear_free_echo_retraces_exactly_at_large_step_and_length():
    """Issue #8: δ = 0.5, L = 50,000. float64 rounding is amplified by chaos; the int64 grid is exact."""
    layer = _nonlinear_layer(step=0.5)
    u = _inputs((50_000, 2, 4))
    float_error = float(layer.retrace_error(u))
    assert float_error > 1e-3, float_error  # measured 1.5: the float echo forgets where it came from
    assert float(layer.retrace_error(u, integrator=FIXED)) == 0.0
    assert float(layer.retrace_error(u, integrator=FixedPointLeapfrog(fraction_bits=40))) == 0.0


def test_fixed_point_step_undoes_itself_bit_for_bit():
    layer = _nonlinear_layer(step=0.7)
    theta = layer.core_parameters()
    q, p = to_fixed(3.0 * _inputs((5, 3), 2)), to_fixed(3.0 * _inputs((5, 3), 3))
    u = _inputs((5, 3), 4)
    q1, p1, half = fixed_point_leapfrog_step(NONLINEAR_HAMILTONIAN, theta, q, p, u)
    assert q1.dtype == p1.dtype == half.dtype == jnp.int64
    q0, p0, half_back = fixed_point_leapfrog_step(NONLINEAR_HAMILTONIAN, theta, q1, -p1, u)
    np.testing.assert_array_equal(q0, q)
    np.testing.assert_array_equal(p0, -p)
    np.testing.assert_array_equal(half_back, half)
    assert int(jnp.max(jnp.abs(q1 - q))) > 2**20  # the step did move the state


def test_fixed_point_forward_follows_the_float_trajectory():
    layer = _nonlinear_layer(step=0.1)
    theta, drives = layer.core_parameters(), layer.drives(_inputs((200, 2, 4)))
    zeros = jnp.zeros((2, 3))
    float_positions, _ = run_leapfrog(NONLINEAR_HAMILTONIAN, theta, drives, zeros, zeros)
    fixed_positions, (q, p) = run_fixed_point_leapfrog(NONLINEAR_HAMILTONIAN, theta, drives, zeros, zeros, 40)
    assert fixed_positions.dtype == jnp.float64 and q.dtype == p.dtype == jnp.int64
    np.testing.assert_array_equal(from_fixed(q, 40), fixed_positions[-1])
    # 200 roundings of 2^-41 each, mildly amplified: far below the signal, far above zero
    assert 0 < float(jnp.max(jnp.abs(fixed_positions - float_positions))) < 1e-9
    # through the public core, in the drives' dtype
    out = run_core(NONLINEAR_HAMILTONIAN, Choices(integrator=FixedPointLeapfrog(fraction_bits=40)),
                   theta, drives.astype(jnp.float32))
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, float_positions, rtol=0, atol=1e-5)


# --- RHEL on the grid == float64 BPTT ---------------------------------------------------------------

def _worst(model, x, y, bptt, eps, fraction_bits):
    _, rhel = hamecho.value_and_grad(model, x, y, gradient=RHEL(eps=eps),
                                     integrator=FixedPointLeapfrog(fraction_bits=fraction_bits))
    rows = compare_gradients(rhel, bptt)
    assert len(rows) > 10
    return max(r["rel_err"] for r in rows)


def _problem(hru, step=0.1):
    return random_problem(hru=hru, blocks=2, hidden=8, state=4, length=200, batch=3, in_dim=3, classes=4,
                          task="classification", output_step=1, step=step, seed=0, dtype=jnp.float64)


def test_nonlinear_fixed_point_rhel_matches_float_bptt():
    """Error budget: the O(ε²) RHEL bias (float RHEL here: 5e-10) plus grid rounding. Each echo step
    rounds both echoes' states by ~2^-b independently; their difference carries the signal ~ε·adjoint,
    so the relative error goes as 2^-b·√L/ε. Measured (L = 200, δ = 0.1, ε = 1e-3): 5.3e-5 at b = 40,
    3.6e-7 at b = 48 (2^8 = 256 → ×150), 5.4e-3 at b = 32; at ε = 1e-2, b = 40: 7.9e-6."""
    model, x, y = _problem("nonlinear")
    _, bptt = hamecho.value_and_grad(model, x, y, gradient=BPTT())
    e40 = _worst(model, x, y, bptt, eps=1e-3, fraction_bits=40)
    e48 = _worst(model, x, y, bptt, eps=1e-3, fraction_bits=48)
    assert e40 < 5e-4, e40
    assert e48 < e40 / 30, (e40, e48)  # the error is the grid's: it shrinks with the resolution


def test_linear_fixed_point_rhel_matches_float_bptt_two_and_one_sided():
    """Linear HRU: measured 7.5e-6 at b = 40, ε = 1e-3 (two-sided); one-sided adds its O(ε) bias."""
    model, x, y = _problem("linear")
    _, bptt = hamecho.value_and_grad(model, x, y, gradient=BPTT())
    assert _worst(model, x, y, bptt, eps=1e-3, fraction_bits=40) < 1e-4
    one_sided = RHEL(eps=1e-2, estimator="one_sided")
    _, float_one = hamecho.value_and_grad(model, x, y, gradient=one_sided)
    _, fixed_one = hamecho.value_and_grad(model, x, y, gradient=one_sided,
                                          integrator=FixedPointLeapfrog(fraction_bits=40))
    for row in compare_gradients(fixed_one, float_one):
        assert row["rel_err"] < 1e-4, row


# --- options and conversions ------------------------------------------------------------------------

@pytest.mark.parametrize("fraction_bits", [0, 63, 32.0, True])
def test_bad_fraction_bits(fraction_bits):
    with pytest.raises(ValueError, match="fraction_bits must be an integer in"):
        FixedPointLeapfrog(fraction_bits=fraction_bits)


def test_fixed_point_works_with_rhel_only():
    with pytest.raises(ValueError, match="use gradient=hamecho.RHEL()"):
        Choices(gradient=BPTT(), integrator=FIXED)
    for estimator in ("two_sided", "one_sided"):
        choices = Choices(gradient=RHEL(estimator=estimator), integrator=FixedPointLeapfrog(fraction_bits=48))
        assert not choices.integrator.parallel
    assert FixedPointLeapfrog().fraction_bits == 32


def test_conversions_range_and_x64():
    largest, resolution = fixed_point_range(32)
    assert (largest, resolution) == (2.0**31, 2.0**-32)
    x = jnp.array([0.0, 1.5, -1e6, 2.0**-33, 3 * 2.0**-33])
    np.testing.assert_array_equal(to_fixed(x), [0, 3 * 2**31, -10**6 * 2**32, 0, 2])  # ties to even
    np.testing.assert_array_equal(from_fixed(to_fixed(x[:3])), x[:3])
    with pytest.raises(ValueError, match="does not fit"):
        to_fixed(jnp.array([2.0**31]))
    with pytest.raises(ValueError, match="does not fit"):
        to_fixed(jnp.array([jnp.nan]))
    assert int(to_fixed(jnp.array([2.0**31 - 1]))[0]) == (2**31 - 1) * 2**32
    theta = _nonlinear_layer(0.1).core_parameters()
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(ValueError, match="x64"):
            to_fixed(np.zeros(2))
        with pytest.raises(ValueError, match="x64"):
            run_core(NONLINEAR_HAMILTONIAN, Choices(integrator=FIXED), theta, jnp.zeros((3, 1, 3), jnp.float32))
    finally:
        jax.config.update("jax_enable_x64", True)

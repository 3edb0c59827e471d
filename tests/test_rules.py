"""The other learning rules on devices (issue #26 section 2): ``he.PhysicsAware`` (the device's forward pass,
its twin's backward pass at the measured states; Wright et al. 2022) and ``he.SPSA`` (loss evaluations
only; Spall 1992), beside RHEL and BPTT; the device passes each update costs; the devices each accepts.

Core-level problems (one Hamiltonian core, a random cotangent) keep compilation short; every draw is seeded.
"""
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gradient_checks import core_grads, cosine, flat, rel_err

import hamecho as he
from hamecho.core.gradients import spsa_estimate
from hamecho.core.hamiltonians import LINEAR_HAMILTONIAN, NONLINEAR_HAMILTONIAN
from hamecho.nn.hssm import through_cores
from hamecho.physical import DampedLeapfrog, IdealDevice, SimulatedDevice, SimulatedTwin

pytestmark = pytest.mark.usefixtures("x64")

P, L, N = 4, 30, 3


def _problem(hru: str, seed: int = 0):
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    if hru == "linear":
        ham = LINEAR_HAMILTONIAN
        theta = {"a": jax.random.uniform(k[0], (P,)), "steps": jax.random.uniform(k[1], (P,))}
    else:
        ham = NONLINEAR_HAMILTONIAN
        theta = {"w": jax.random.uniform(k[0], (P,), minval=0.5, maxval=1.0), "b": jnp.full((P,), 0.1),
                 "alpha": jnp.asarray(0.5), "log_step": jnp.log(jnp.asarray(0.3))}
    return ham, theta, jax.random.normal(k[2], (L, N, P)), jax.random.normal(k[3], (L, N, P))


# --- physics-aware training ----------------------------------------------------------------------------

@pytest.mark.parametrize("hru", ["linear", "nonlinear"])
def test_physics_aware_on_the_ideal_device_is_bptt(hru):
    """Measured to rounding: the measured states are the leapfrog's, and the twin is the leapfrog."""
    ham, theta, drives, cot = _problem(hru)
    bptt = core_grads(ham, he.BPTT(), he.Leapfrog(), theta, drives, cot)
    for device in (IdealDevice(), SimulatedDevice()):
        assert rel_err(core_grads(ham, he.PhysicsAware(), device, theta, drives, cot), bptt) < 1e-12


def test_physics_aware_with_the_exact_twin_is_the_devices_own_bptt():
    """A damped device with a fixed model error: with the twin that knows both (``twin(exact=True)``) the rule
    is BPTT of the device's own dynamics; with the nominal twin (the model's leapfrog) it is not."""
    ham, theta, drives, cot = _problem("nonlinear")
    device = SimulatedDevice(damping=0.05, model_error=0.2, seed=3)
    own = core_grads(ham, he.BPTT(), SimulatedTwin(damping=0.05, model_error=0.2, seed=3), theta, drives, cot)
    exact = core_grads(ham, he.PhysicsAware(twin=device.twin(exact=True)), device, theta, drives, cot)
    nominal = core_grads(ham, he.PhysicsAware(), device, theta, drives, cot)
    assert rel_err(exact, own) < 1e-10
    assert rel_err(nominal, own) > 1e-2


def test_a_wrong_twin_hurts_physics_aware_more_than_rhel_and_damping_the_reverse():
    """The theory the comparison tests, on one core. Under a fixed model error (the device realises θ·(1 + 0.2ξ))
    both rules are measured against the device's own gradient (BPTT of ``SimulatedTwin``). RHEL runs forward
    and echoes on the same device, so the error enters only through the local energy derivatives the
    simulation evaluates with the nominal θ (a real device would measure them): cosine measured 0.983.
    Physics-aware backpropagates through the nominal twin, every step's Jacobian wrong: cosine 0.872.
    Under damping RHEL's echo no longer retraces and it departs from the damped device's gradient, while
    physics-aware with the damped twin is exact."""
    ham, theta, drives, cot = _problem("linear")
    rhel = he.RHEL(eps=1e-3)
    wrong = SimulatedDevice(model_error=0.2, seed=1)
    own = core_grads(ham, he.BPTT(), SimulatedTwin(model_error=0.2, seed=1), theta, drives, cot)
    rhel_cosine = cosine(core_grads(ham, rhel, wrong, theta, drives, cot), own)
    aware_cosine = cosine(core_grads(ham, he.PhysicsAware(), wrong, theta, drives, cot), own)
    assert rhel_cosine > 0.97 and aware_cosine < rhel_cosine - 0.05
    lossy = SimulatedDevice(damping=0.1)
    own = core_grads(ham, he.BPTT(), DampedLeapfrog(damping=0.1), theta, drives, cot)
    rhel_error = rel_err(core_grads(ham, rhel, lossy, theta, drives, cot), own)
    aware_error = rel_err(core_grads(ham, he.PhysicsAware(twin=DampedLeapfrog(damping=0.1)), lossy, theta,
                                       drives, cot), own)
    assert aware_error < 1e-10 and rhel_error > 1e-2


def test_physics_aware_is_refused_on_a_digital_integrator_and_with_a_twin_that_cannot_start_from_a_state():
    ham, theta, drives, cot = _problem("linear")
    with pytest.raises(ValueError, match="measures nothing"):
        core_grads(ham, he.PhysicsAware(), he.Leapfrog(), theta, drives, cot)
    with pytest.raises(ValueError, match="twin of"):
        core_grads(ham, he.PhysicsAware(twin=IdealDevice()), SimulatedDevice(), theta, drives, cot)
    with pytest.raises(ValueError, match="twin must be"):
        he.PhysicsAware(twin="leapfrog")


# --- SPSA --------------------------------------------------------------------------------------------------

def test_spsa_is_unbiased_on_a_quadratic_with_the_variance_spall_predicts():
    """On a quadratic the ± difference is exact, so ĝ = ΔΔᵀ∇ with E ĝ = ∇ and E‖ĝ − ∇‖² = (d − 1)‖∇‖² per draw
    (Rademacher Δ): the variance grows with the number d of perturbed entries. Over q = 4000 single draws
    the mean is within 5 standard errors of ∇ in every entry, and the measured variance within 15 % of the
    prediction, for d = 4 and d = 16."""
    q = 4000
    for d in (4, 16):
        true, loss, point, join = _quadratic(d)
        one_draw = partial(_one_spsa_draw, loss, point, join)
        draws = np.asarray(jax.jit(jax.vmap(one_draw))(jax.random.split(jax.random.PRNGKey(7), q)))
        standard_error = np.sqrt((np.sum(true**2) - true**2) / q)
        assert np.all(np.abs(draws.mean(axis=0) - true) < 5 * standard_error)
        predicted = (d - 1) * np.sum(true**2)
        assert np.mean(np.sum((draws - true) ** 2, axis=1)) == pytest.approx(predicted, rel=0.15)
    # averaging q draws inside one estimate divides the variance by q
    averaged = join(spsa_estimate(loss, point, he.SPSA(n_perturbations=q, scale=0.3), jax.random.PRNGKey(8)))
    assert np.all(np.abs(np.asarray(averaged) - true) < 5 * standard_error)


def _quadratic(d: int):
    """A quadratic with a linear term in d numbers split over two arrays: its gradient at a random point, the
    loss, the point and the joining of the two arrays."""
    hessian = jax.random.normal(jax.random.PRNGKey(d), (d, d))
    hessian = hessian @ hessian.T / d
    point = {"a": jax.random.normal(jax.random.PRNGKey(1), (d // 2,)),
             "b": jax.random.normal(jax.random.PRNGKey(2), (d - d // 2,))}

    def join(p):
        return jnp.concatenate([p["a"], p["b"]])

    def loss(p):
        return 0.5 * join(p) @ hessian @ join(p) + jnp.sum(join(p))

    return np.asarray(join(jax.grad(loss)(point))), loss, point, join


def _one_spsa_draw(loss, point, join, key):
    return join(spsa_estimate(loss, point, he.SPSA(scale=0.3), key))


def _hssm_problem():
    model = he.HSSM(in_dim=2, out_dim=3, hidden=5, state=3, blocks=1, hru="nonlinear", step=0.3,
                    key=jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 16, 2))
    return model, x, jnp.array([0, 2, 1, 0])


def test_spsa_on_a_device_approaches_bptt_and_is_exact_after_the_last_core():
    """With many perturbations the estimate points along BPTT's gradient (cosine measured 0.977 at q = 200,
    c = 1e-4; asserted > 0.9) and the loss is the model's; the arrays after the last core get BPTT's exact
    gradient; the perturbed set is every trainable array before it."""
    model, x, y = _hssm_problem()
    loss, bptt = he.value_and_grad(model, x, y, gradient=he.BPTT(), integrator=he.Leapfrog())
    spsa_loss, spsa = he.value_and_grad(model, x, y, gradient=he.SPSA(n_perturbations=200, scale=1e-4),
                                        integrator=SimulatedDevice())
    assert float(spsa_loss) == pytest.approx(float(loss), rel=1e-12)
    import equinox as eqx
    perturbed = through_cores(model)
    exact = jax.tree_util.tree_map(lambda t, p: t and not p, he.trainable(model), perturbed)
    assert rel_err(eqx.filter(spsa, exact), eqx.filter(bptt, exact)) < 1e-12
    assert cosine(eqx.filter(spsa, perturbed), eqx.filter(bptt, perturbed)) > 0.9
    assert flat(eqx.filter(spsa, perturbed)).size > 0 and flat(eqx.filter(spsa, exact)).size > 0


def test_spsa_refuses_memory_strategies_and_differentiating_a_core():
    model, x, y = _hssm_problem()
    with pytest.raises(ValueError, match="memory=None"):
        he.value_and_grad(model, x, y, gradient=he.SPSA(), memory=he.RecomputeBlocks())
    ham, theta, drives, cot = _problem("linear")
    with pytest.raises(ValueError, match="loss evaluations"):
        core_grads(ham, he.SPSA(), SimulatedDevice(), theta, drives, cot)
    for bad in ({"n_perturbations": 0}, {"scale": 0.0}, {"scale": float("nan")}, {"seed": -1}):
        with pytest.raises(ValueError):
            he.SPSA(**bad)


# --- what an update costs -------------------------------------------------------------------------------

def test_device_passes_per_update():
    """RHEL: a forward pass and two echoes per echo pair (a device's repeats); SPSA: the unperturbed pass and
    two per perturbation; physics-aware: one (its backward pass is digital); per core."""
    assert he.RHEL().passes_per_step(SimulatedDevice(), cores=1) == 3
    assert he.RHEL().passes_per_step(SimulatedDevice(repeats=4), cores=2) == 24
    assert he.SPSA(n_perturbations=5).passes_per_step(SimulatedDevice(), cores=1) == 11
    assert he.SPSA(n_perturbations=5).passes_per_step(SimulatedDevice(), cores=3) == 33
    assert he.PhysicsAware().passes_per_step(SimulatedDevice(), cores=2) == 2
    assert he.BPTT().passes_per_step(cores=1) == 1
    with pytest.raises(ValueError, match="cores"):
        he.RHEL().passes_per_step(cores=0)


# --- the comparison of rules (hamecho rules) ----------------------------------------------------------------

def test_rules_of_the_comparison_fit_the_device_and_count_passes():
    from hamecho.tools.robustness import comparison as cmp
    from hamecho.tools.robustness.rules import RULES

    lossy = cmp.comparison_device("damping", 0.5)
    assert RULES["physics_aware"].gradient(10.0, lossy) == he.PhysicsAware(twin=DampedLeapfrog(damping=0.5))
    assert RULES["physics_aware"].gradient(10.0, cmp.comparison_device("model_error", 0.3)) == he.PhysicsAware()
    assert RULES["rhel"].gradient(10.0, lossy) == he.RHEL(eps=10.0)
    assert [RULES[r].passes_per_step(10.0, lossy, cores=2) for r in ("rhel", "physics_aware", "spsa")] == [6, 2, 6]
    assert cmp.comparison_device("model_drift", 0.1, seed=2) == SimulatedDevice(seed=2, model_error=0.1,
                                                                                model_drift=True)
    with pytest.raises(ValueError, match="knob must be one of"):
        cmp.comparison_device("humidity", 1.0)


def test_rule_gradients_on_the_ideal_device_and_under_damping():
    """The sweep's own rows: on the ideal device RHEL and physics-aware give the device's gradient (cosine 1);
    under damping the reference is the damped model's BPTT, which physics-aware with the damped twin equals."""
    from hamecho.tools.robustness import comparison as cmp
    from hamecho.tools.robustness.problems import GradientSetup

    setup = cmp.ComparisonSetup(rules=("rhel", "physics_aware"), eps=1e-2,
                                gradient=GradientSetup(length=10, batch=2, hidden=3, state=2, device_seeds=(0,)),
                                levels={"ideal": (0.0,), "damping": (1.0,)})
    rows = {(r["knob"], r["rule"]): r for r in cmp.rule_gradients(setup)}
    assert rows["ideal", "rhel"]["cosine"] > 1 - 1e-6 and rows["ideal", "physics_aware"]["cosine"] > 1 - 1e-12
    assert rows["damping", "physics_aware"]["cosine"] > 1 - 1e-12
    assert rows["damping", "rhel"]["cosine"] < rows["damping", "physics_aware"]["cosine"]
    assert [rows["ideal", r]["passes"] for r in ("rhel", "physics_aware")] == [3, 1]


def test_rule_gradients_on_the_circuit_with_and_without_series_resistance():
    """The circuit column: on ideal LC tanks in ngspice RHEL and physics-aware (its twin ExactFlow) give the
    circuit's own gradient to the simulator's accuracy; with lossy inductors the physics-aware rule, whose twin
    knows the resistance, stays there while RHEL, whose echo the loss breaks, falls behind."""
    from hamecho.physical import CircuitDevice, ExactFlow
    from hamecho.tools.robustness import comparison as cmp
    from hamecho.tools.robustness.problems import GradientSetup
    from hamecho.tools.robustness.rules import RULES

    assert cmp.comparison_device("circuit", 0.1) == CircuitDevice(timestep=0.02, series_resistance=0.1)
    assert RULES["physics_aware"].gradient(10.0, cmp.comparison_device("circuit", 0.1)) == \
        he.PhysicsAware(twin=ExactFlow(series_resistance=0.1))
    setup = cmp.ComparisonSetup(rules=("rhel", "physics_aware"), eps=10.0,
                                gradient=GradientSetup(length=10, batch=2, hidden=3, state=2, device_seeds=(0,)),
                                levels={"circuit": (0.0, 0.1)})
    rows = {(r["level"], r["rule"]): r for r in cmp.rule_gradients(setup)}
    assert rows[0.0, "rhel"]["cosine"] > 1 - 1e-4 and rows[0.0, "physics_aware"]["cosine"] > 1 - 1e-4
    assert rows[0.1, "physics_aware"]["cosine"] > 1 - 1e-4
    assert rows[0.1, "rhel"]["cosine"] < rows[0.1, "physics_aware"]["cosine"]


def test_comparison_outputs_from_a_recorded_result(tmp_path):
    """The JSON, the Markdown table and the three plots from a result made by hand (no computing)."""
    from hamecho.tools.robustness.comparison import ComparisonResult, ComparisonSetup, _jsonable
    from hamecho.tools.robustness.comparison_outputs import running_mean, write_comparison

    setup = _jsonable(__import__("dataclasses").asdict(ComparisonSetup(rules=("rhel", "spsa"))))
    summary = [{"knob": k, "level": lv, "rule": r, "seeds": 1, "passes": 3, "cosine": c, "cosine_std": 0.0,
                "norm_ratio": 1.0, "norm_ratio_std": 0.0, "cosine_min": c, "cosine_min_std": 0.0}
               for k, lv, r, c in (("noise", 1e-3, "rhel", 0.99), ("noise", 1e-1, "rhel", 0.5),
                                   ("noise", 1e-3, "spsa", 0.1), ("noise", 1e-1, "spsa", 0.1))]
    runs = [{"knob": "noise", "level": 0.1, "rule": r, "seed": 0, "steps": 3, "passes": [3, 6, 9],
             "losses": [1.0, 0.9, 0.8], "test_accuracy": a} for r, a in (("rhel", 0.75), ("spsa", 0.5))]
    result = ComparisonResult(setup=setup, gradient_summary=summary, command="hamecho rules",
                              spsa_dimensions=[{"hidden": 2, "perturbed": 14, "cosine": 0.2, "cosine_std": 0.1,
                                                "predicted": 0.213}],
                              training={"chance": 0.25, "test_cases": 4, "runs": runs})
    paths = write_comparison(result, tmp_path)
    assert sorted(p.name for p in paths) == ["rules.json", "rules.md", "rules_gradients.png",
                                            "rules_spsa_dimension.png", "rules_training.png"]
    table = (tmp_path / "rules.md").read_text()
    assert "| noise | 0.1 | 0.500 (3) | 0.100 (3) |" in table and "| noise | 0.1 | 0.750 (3) | 0.500 (3) |" in table
    np.testing.assert_allclose(running_mean([1.0, 3.0, 5.0], 2), [1.0, 2.0, 4.0])


def test_rules_command_line():
    from hamecho.cli import build_parser
    from hamecho.cli.rules import command_line

    args = build_parser().parse_args(["rules", "--rules", "rhel,spsa", "--levels", "noise=0.1", "damping=1",
                                      "--knobs", "ideal", "noise", "--device-seeds", "0", "--no-train"])
    assert args.levels == [("noise", 0.1), ("damping", 1.0)]
    assert command_line(args) == ("hamecho rules --rules rhel,spsa --levels noise=0.1 damping=1 --knobs ideal noise "
                                  "--device-seeds 0 --out benchmarks/results/rules --no-train")
    for bad in (["--levels", "humidity=1"], ["--levels", "noise=loud"], ["--knobs", "humidity"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["rules", *bad])

"""Small self-contained demonstrations that write figures (the library of ``hamecho demo ...``).

:func:`run_oscillators` -- the paper's continuous-time toy (six coupled harmonic oscillators, input
force on oscillator 1, oscillator 4 tracks a sinusoid). Compares RHEL with the adjoint method and
with autodiff through the discretised forward pass, trains the parameters with both, and writes
PNGs (plus an animation when a writer is available) to ``out``.
"""
from __future__ import annotations

import os
import time

__all__ = ["run_oscillators"]


def run_oscillators(out: str = "out/demo-oscillators", *, steps: int = 150, lr: float = 0.03, T: float = 10.0,
                    n_steps: int = 1000, eps=(1.0, 0.3, 1e-1, 1e-2, 1e-4), nudge: str = "forward",
                    anharmonic: float = 0.0, seed: int = 0, animation: bool = True, progress: bool = False,
                    log=print) -> dict:
    """Run the oscillator demonstration; return its measurements (the JSON ``hamecho demo oscillators --json``
    prints).

    ``steps`` Adam steps (learning rate ``lr``) with each method; forward pass on [-T, 0] in ``n_steps``
    integrator steps; ``eps``: the nudging strengths compared, the smallest used for training and for the
    reported errors; ``nudge``: where the echo reads d(loss)/d(phi), "forward" (on the forward trajectory)
    or "echo"; ``anharmonic``: quartic spring strength (0: the paper's linear toy); ``seed``: of the initial
    parameters; ``animation``: also write an animation; ``progress``: tqdm bars; ``log(line)``: what it says.
    """
    if steps < 0 or n_steps < 1 or T <= 0 or min(eps) <= 0:
        raise ValueError("--steps must be >= 0, --n-steps >= 1, --T > 0 and every --eps > 0")
    start = time.perf_counter()
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import matplotlib

    matplotlib.use("Agg")
    import optax
    from tqdm.auto import tqdm

    from hamecho import continuous as c
    from hamecho.core.gradients import RHEL

    os.makedirs(out, exist_ok=True)
    task = c.OscillatorTask(anharmonic=anharmonic)
    system = task.system()
    theta0 = c.oscillator_params(jax.random.PRNGKey(seed))
    zero = jnp.zeros(c.N_OSC)
    T, n = float(T), int(n_steps)
    eps_list = sorted(set(float(e) for e in eps), reverse=True)
    eps = eps_list[-1]
    names = c.parameter_names()

    # -- gradients at the initial parameters --------------------------------------------------
    c.check_time_reversal(system, theta0, (c.N_OSC,))
    c.check_separable(system, theta0, (c.N_OSC,))
    auto = c.autodiff_gradient(system, theta0, zero, zero, T, n)
    adj = c.adjoint_gradient(system, theta0, zero, zero, T, n)
    rhel = {}
    for kind in sorted({nudge, "echo"}, key=lambda s: s != nudge):
        for e in eps_list:
            rhel[kind, e] = c.rhel_gradient(system, theta0, zero, zero, T, n, RHEL(eps=e), nudge=kind, check=False)
    main = rhel[nudge, eps]
    err = {
        "rhel_vs_adjoint": c.relative_error(main.theta, adj.theta),
        "adjoint_vs_autodiff": c.relative_error(adj.theta, auto.theta),
        "rhel_vs_autodiff": c.relative_error(main.theta, auto.theta),
    }
    sweep = {kind: {f"{e:g}": c.relative_error(rhel[kind, e].theta, adj.theta) for e in eps_list}
             for kind in {k for k, _ in rhel}}
    retrace = c.retrace_error(system, theta0, jnp.linspace(-0.5, 0.5, c.N_OSC),
                              jnp.linspace(0.3, -0.2, c.N_OSC), T, n)
    log(f"rel. error (max over {len(names)} parameters, eps={eps:g}, nudge={nudge}): "
        f"RHEL vs adjoint {err['rhel_vs_adjoint']:.2e}, adjoint vs autodiff "
        f"{err['adjoint_vs_autodiff']:.2e}; retrace error {retrace:.2e}")

    # -- training: RHEL and adjoint, same steps -------------------------------------------------
    optimiser = optax.adam(lr)

    def grad_fn(method):
        if method == "rhel":
            return lambda th: c.rhel_gradient(system, th, zero, zero, T, n, RHEL(eps=eps), nudge=nudge, check=False)
        return lambda th: c.adjoint_gradient(system, th, zero, zero, T, n)

    curves, finals, gap = {}, {}, []
    for method in ("rhel", "adjoint"):
        theta, state, losses = theta0, optimiser.init(theta0), []
        get = grad_fn(method)
        for _ in tqdm(range(steps), desc=f"train ({method})", disable=not progress, leave=False):
            res = get(theta)
            losses.append(float(res.loss))
            if method == "rhel":
                gap.append(c.relative_error(res.theta, c.adjoint_gradient(
                    system, theta, zero, zero, T, n).theta))
            updates, state = optimiser.update(res.theta, state, theta)
            theta = optax.apply_updates(theta, updates)
        losses.append(float(c.discrete_loss(system, theta, zero, zero, T, n)))
        curves[method], finals[method] = losses, theta
    log(f"training ({steps} Adam steps): loss {curves['rhel'][0]:.4g} -> "
        f"RHEL {curves['rhel'][-1]:.4g}, adjoint {curves['adjoint'][-1]:.4g}")

    # -- figures --------------------------------------------------------------------------------
    files = _oscillator_figures(
        out, task=task, system=system, theta0=theta0, theta_final=finals["rhel"],
        T=T, n=n, eps=eps, eps_list=eps_list, nudge=nudge, rhel=rhel, adj=adj, names=names,
        curves=curves, sweep=sweep)
    if not animation:
        log("animation skipped (--no-animation)")
    else:
        path, message = _oscillator_animation(out, system=system, theta=theta0, T=T, n=n)
        log(message)
        if path:
            files.append(path)
    runtime = time.perf_counter() - start
    log("wrote " + ", ".join(files) + f" in {runtime:.1f} s")
    return {
        "demo": "oscillators",
        "eps": eps,
        "eps_list": eps_list,
        "nudge": nudge,
        "T": T,
        "n_steps": n,
        "dt": T / n,
        "n_parameters": len(names),
        "rel_err_rhel_vs_adjoint": err["rhel_vs_adjoint"],
        "rel_err_adjoint_vs_autodiff": err["adjoint_vs_autodiff"],
        "rel_err_rhel_vs_autodiff": err["rhel_vs_autodiff"],
        "rel_err_rhel_vs_adjoint_by_eps": sweep,
        "retrace_error": retrace,
        "train_steps": steps,
        "loss_initial": curves["rhel"][0],
        "loss_final_rhel": curves["rhel"][-1],
        "loss_final_adjoint": curves["adjoint"][-1],
        "max_rel_err_rhel_vs_adjoint_during_training": max(gap) if gap else None,
        "files": files,
        "runtime_s": runtime,
    }


# ------------------------------------------------------------------------------------------------
# Figures (matplotlib, Agg backend; imported lazily so `hamecho --help` stays fast)
# ------------------------------------------------------------------------------------------------
def _oscillator_figures(out, *, task, system, theta0, theta_final, T, n, eps, eps_list, nudge,
                        rhel, adj, names, curves, sweep):
    import matplotlib.pyplot as plt
    import numpy as np

    from hamecho import continuous as c

    files = []

    def save(fig, name, dpi=110):
        path = os.path.join(out, name)
        fig.savefig(path, dpi=dpi)
        plt.close(fig)
        files.append(path)

    main = rhel[nudge, eps]
    fwd = main.extras["forward"]
    t = np.asarray(fwd.t)
    tau = T + t  # echo time of echo state j = tau[j]
    dt = T / n
    phi = np.asarray(fwd.phi)
    echo0 = c.echo(system, theta0, fwd.phi[-1], fwd.pi[-1], T, n, 0.0)
    colors = plt.cm.viridis(np.linspace(0, 0.9, c.N_OSC))

    # 1. forward and echo trajectories ----------------------------------------------------------
    fig, axes = plt.subplots(3, 1, figsize=(8, 8.5), sharex=False)
    ax = axes[0]
    for i in range(c.N_OSC):
        ax.plot(t, phi[:, i], color=colors[i], lw=1.8 if i == task.output else 0.9,
                label=f"$\\phi_{i + 1}$")
    ax.plot(t, np.asarray(task.target(fwd.t)), "k--", lw=1.2, label="target $y(t)$")
    ax.set(xlabel="forward time $t$", ylabel="position",
           title="Forward pass on $[-T, 0]$ (input force on oscillator 1)")
    ax.legend(ncol=4, fontsize=7, loc="upper left")
    ax = axes[1]
    for i in range(c.N_OSC):
        ax.plot(tau, phi[::-1, i], color="0.75", lw=3.0)
        ax.plot(tau, np.asarray(echo0.phi)[:, i], color=colors[i], lw=1.0)
    ax.plot([], [], color="0.75", lw=3, label="reversed forward $\\phi(-\\tau)$")
    ax.plot([], [], color="k", lw=1, label="echo $\\phi^e(\\tau)$, $\\epsilon=0$")
    ax.set(xlabel="echo time $\\tau$", ylabel="position",
           title=f"Echo from the momentum-flipped final state (retrace error "
                 f"{float(np.max(np.abs(np.asarray(echo0.phi) - phi[::-1]))):.1e})")
    ax.legend(fontsize=7, loc="upper left")
    ax = axes[2]
    ep, em = np.asarray(main.extras["echo_pi"])
    lam = np.asarray(adj.extras["lambda_phi"])[::-1]
    o = task.output
    ax.plot(tau, lam[:, o], color="k", lw=3, alpha=0.35, label="adjoint $\\lambda_\\phi$")
    ax.plot(tau, (ep[:, o] - em[:, o]) / (2 * eps), color="C3", lw=1,
            label=f"RHEL $(\\pi^e_+ - \\pi^e_-)/2\\epsilon$, $\\epsilon$={eps:g}")
    ax.set(xlabel="echo time $\\tau$", ylabel=f"$dL/d\\phi_{o + 1}$",
           title="Echo response to the nudge = adjoint state (Theorem 3.1)")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    save(fig, "trajectories.png")

    # 2. running accumulator for one coupling ----------------------------------------------------
    k_name = "k1,4"
    idx = names.index(k_name)
    k_sub = k_name[1:]
    flat_trace = lambda res: np.stack([c.flatten(jax_tree_slice(res.trace, k)) for k in range(n)])  # noqa: E731
    adj_tr = flat_trace(adj)[::-1, idx]  # echo order
    fig, axes = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    axes[0].plot(tau[1:], adj_tr / dt, "k", lw=3, alpha=0.35, label="adjoint")
    axes[1].plot(tau[1:], np.cumsum(adj_tr), "k", lw=3, alpha=0.35, label="adjoint")
    for e in eps_list:
        tr = flat_trace(rhel["echo", e])[::-1, idx]
        axes[0].plot(tau[1:], tr / dt, lw=1, label=f"RHEL echo-nudge $\\epsilon$={e:g}")
        axes[1].plot(tau[1:], np.cumsum(tr), lw=1, label=f"RHEL echo-nudge $\\epsilon$={e:g}")
    if nudge == "forward":
        tr = flat_trace(main)[::-1, idx]
        axes[1].plot(tau[1:], np.cumsum(tr), "C3:", lw=1.5,
                     label=f"RHEL forward-nudge $\\epsilon$={eps:g}")
    axes[0].set(ylabel=f"$g_{{{k_sub}}}(\\tau)$",
                title=f"Gradient density for coupling $k_{{{k_sub}}}$ along the echo")
    axes[1].set(xlabel="echo time $\\tau$", ylabel="running sum",
                title=f"Running accumulator $\\int_0^\\tau g\\,d\\tau'$ (-> $dL/dk_{{{k_sub}}}$)")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    save(fig, "accumulator.png")

    # 3. per-parameter comparison (+ the docs figure) ---------------------------------------------
    g_adj, g_rhel = c.flatten(adj.theta), c.flatten(main.theta)
    rel = np.abs(g_rhel - g_adj) / np.maximum(np.abs(g_adj), 1e-8 * np.abs(g_adj).max())
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5))
    ax = axes[0, 0]
    ax.plot(tau[1:], adj_tr / dt, "k", lw=3, alpha=0.35, label="adjoint")
    for e in eps_list:
        tr = flat_trace(rhel["echo", e])[::-1, idx]
        ax.plot(tau[1:], tr / dt, lw=0.9, label=f"RHEL $\\epsilon$={e:g}")
    ax.set(xlabel="echo time $\\tau$", ylabel=f"$g_{{{k_sub}}}(\\tau)$",
           title="Gradient trace, echo-state nudge: RHEL -> adjoint as $\\epsilon$ -> 0")
    ax.legend(fontsize=6)
    ax = axes[0, 1]
    for key, marker in (("forward", "o"), ("echo", "s")):
        if key in sweep:
            xs = sorted(float(e) for e in sweep[key])
            ax.loglog(xs, [max(sweep[key][f"{e:g}"], 1e-17) for e in xs], marker + "-",
                      label=f"{key}-state nudge")
    ax.set(xlabel="$\\epsilon$", ylabel="max rel. error vs adjoint",
           title="Two-sided estimator error (27 parameters)")
    ax.legend(fontsize=7)
    ax = axes[1, 0]
    xs = np.arange(len(names))
    ax.bar(xs - 0.2, g_adj, 0.4, color="0.6", label="adjoint")
    ax.bar(xs + 0.2, g_rhel, 0.4, color="C3", label=f"RHEL $\\epsilon$={eps:g}")
    ax.set_xticks(xs, names, rotation=90, fontsize=6)
    ax.set(ylabel="$dL/d\\theta$", title="Gradient per parameter")
    ax.legend(fontsize=7)
    ax = axes[1, 1]
    ax.semilogy(xs, np.maximum(rel, 1e-17), "C3o", ms=3)
    ax.set_xticks(xs, names, rotation=90, fontsize=6)
    ax.set(ylabel="|RHEL - adjoint| / |adjoint|",
           title=f"Rel. error per parameter ({nudge} nudge, $\\epsilon$={eps:g})")
    fig.tight_layout()
    save(fig, "gradients.png", dpi=80)

    # 4. learning curve --------------------------------------------------------------------------
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(curves["adjoint"], "k", lw=3, alpha=0.35, label="adjoint")
    ax.semilogy(curves["rhel"], "C3", lw=1, label=f"RHEL $\\epsilon$={eps:g}")
    ax.set(xlabel="Adam step", ylabel="loss $L$", title="Training the 27 parameters")
    ax.legend()
    fig.tight_layout()
    save(fig, "learning_curve.png")
    del theta_final
    return files


def jax_tree_slice(tree, k):
    import jax

    return jax.tree.map(lambda a: a[k], tree)


def _oscillator_animation(out, *, system, theta, T, n, frames=60):
    """Forward pass then echo, as masses on rails; mp4 via ffmpeg, else GIF via Pillow."""
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib import animation

    from hamecho import continuous as c

    if animation.writers.is_available("ffmpeg"):
        path, writer = os.path.join(out, "oscillators.mp4"), animation.FFMpegWriter(fps=15)
    else:
        try:
            import PIL  # noqa: F401
        except ImportError:
            return None, "animation skipped: neither ffmpeg nor Pillow is available"
        path, writer = os.path.join(out, "oscillators.gif"), animation.PillowWriter(fps=15)
    fwd = c.integrate(system, theta, np.zeros(c.N_OSC), np.zeros(c.N_OSC), T, n)
    ech = c.echo(system, theta, fwd.phi[-1], fwd.pi[-1], T, n, 0.0)
    sel = np.linspace(0, n, frames // 2).astype(int)
    seq = [("forward", float(fwd.t[k]), np.asarray(fwd.phi[k])) for k in sel]
    seq += [("echo", float(ech.t[k]), np.asarray(ech.phi[k])) for k in sel]
    lim = 1.1 * max(float(np.abs(fwd.phi).max()), 1e-3)
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.set(xlim=(-lim, lim), ylim=(-0.5, c.N_OSC - 0.5), xlabel="displacement $\\phi_i$")
    ax.set_yticks(range(c.N_OSC), [f"osc. {i + 1}" for i in range(c.N_OSC)])
    ax.invert_yaxis()
    dots = ax.scatter(np.zeros(c.N_OSC), np.arange(c.N_OSC), s=80, c="C0")
    title = ax.set_title("")

    def draw(i):
        phase, time_, pos = seq[i]
        dots.set_offsets(np.c_[pos, np.arange(c.N_OSC)])
        dots.set_color("C0" if phase == "forward" else "C3")
        title.set_text(f"{phase}: {'t' if phase == 'forward' else 'tau'} = {time_:5.2f}")
        return dots, title

    fig.tight_layout()
    animation.FuncAnimation(fig, draw, frames=len(seq), blit=False).save(path, writer=writer)
    plt.close(fig)
    return path, f"animation written with {type(writer).__name__}"

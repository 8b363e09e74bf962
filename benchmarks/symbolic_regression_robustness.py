"""How large a wiggle of the learned term the sparse regression tolerates.

Posterior-like draws of FitzHugh–Nagumo's f(v) = v - v^3/3 over v in [-2, 2]
(coefficient spread 3% and 1%, plus a smooth wiggle A sin(3v + phase) standing
for what a network adds between the data) are regressed onto two libraries.
Prints the inclusion probabilities of v, v^3 and of the most included spurious
candidate for each wiggle amplitude A (the term's RMS is about 0.5).

    python benchmarks/symbolic_regression_robustness.py
"""

import numpy as np

from bayesude.symbolic import LearnedTerm, discover_term, polynomial_library

NUM_DRAWS, NUM_POINTS = 300, 150
SETTINGS = ((3, 0.1), (5, 0.3))


def cubic_draws(amplitude: float, seed: int = 2) -> LearnedTerm:
    rng = np.random.default_rng(seed)
    v = np.sort(rng.uniform(-2.0, 2.0, NUM_POINTS))
    linear = 1.0 + 0.03 * rng.standard_normal(NUM_DRAWS)
    cubic = -1.0 / 3.0 + 0.01 * rng.standard_normal(NUM_DRAWS)
    phase = rng.uniform(0, 2 * np.pi, NUM_DRAWS)
    wiggle = amplitude * np.sin(3.0 * v[None, :] + phase[:, None])
    outputs = linear[:, None] * v + cubic[:, None] * v**3 + wiggle
    return LearnedTerm("cubic_nonlinearity", "draws", {"v": v}, outputs)


def main() -> None:
    print("amplitude library threshold P(v) P(v3) max P(spurious)")
    for amplitude in (0.01, 0.02, 0.05, 0.1, 0.2):
        for degree, threshold in SETTINGS:
            discovery = discover_term(
                cubic_draws(amplitude), polynomial_library(("v",), degree), threshold
            )
            p = dict(zip(discovery.library.labels, discovery.inclusion_probability))
            spurious = max(q for k, q in p.items() if k not in ("v", "v3"))
            print(
                f"{amplitude:9.2f} poly{degree}   {threshold:9.2f} {p['v']:4.2f} "
                f"{p['v3']:5.2f} {spurious:15.2f}"
            )


if __name__ == "__main__":
    main()

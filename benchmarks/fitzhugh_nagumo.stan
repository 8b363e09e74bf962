// FitzHugh-Nagumo with unknown a, b, tau and noise, observed in v and w.
// The same problem as benchmarks/reference_problem.py: same priors, same
// tolerances; ts[1] is the initial time, where the state is known.
functions {
  vector fitzhugh_nagumo(real t, vector y, real a, real b, real tau,
                         real i_ext) {
    vector[2] dydt;
    dydt[1] = y[1] - y[1] ^ 3 / 3 - y[2] + i_ext;
    dydt[2] = (y[1] + a - b * y[2]) / tau;
    return dydt;
  }
}
data {
  int<lower=2> N;
  array[N] real ts;
  vector[N] v_obs;
  vector[N] w_obs;
  vector[2] y0;
  real i_ext;
  real rtol;
  real atol;
  int max_steps;
  real noise_prior_scale;
}
parameters {
  real a;
  real b;
  real<lower=0> tau;
  real<lower=0> sigma_v;
  real<lower=0> sigma_w;
}
model {
  array[N - 1] vector[2] y_hat = ode_rk45_tol(fitzhugh_nagumo, y0, ts[1],
                                             ts[2:N], rtol, atol, max_steps,
                                             a, b, tau, i_ext);
  vector[N] v_hat;
  vector[N] w_hat;
  v_hat[1] = y0[1];
  w_hat[1] = y0[2];
  for (n in 2:N) {
    v_hat[n] = y_hat[n - 1][1];
    w_hat[n] = y_hat[n - 1][2];
  }
  a ~ normal(0.7, 0.3);
  b ~ normal(0.8, 0.3);
  tau ~ lognormal(2.5, 0.5);
  sigma_v ~ normal(0, noise_prior_scale);
  sigma_w ~ normal(0, noise_prior_scale);
  v_obs ~ normal(v_hat, sigma_v);
  w_obs ~ normal(w_hat, sigma_w);
}

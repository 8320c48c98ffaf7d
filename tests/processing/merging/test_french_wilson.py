"""French–Wilson amplitudes and the Wilson B factor."""
import numpy as np
import pytest
from scipy.integrate import quad

from processing.merging.french_wilson import french_wilson, wilson_prior
from processing.merging.wilson import wilson_b, wilson_b_from_merged


def _reference_moments(i, s, big_s, centric):
    """Posterior E[√J] and sd by adaptive quadrature (scipy), for comparison."""
    if centric:
        prior = lambda j: np.exp(-j / (2 * big_s)) / np.sqrt(j)  # noqa: E731
    else:
        prior = lambda j: np.exp(-j / big_s)  # noqa: E731
    post = lambda j: prior(j) * np.exp(-0.5 * ((i - j) / s) ** 2)  # noqa: E731
    hi = max(i, 0.0) + 20 * s + 20 * big_s
    kw = dict(limit=500, points=[i] if i > 0 else None)
    z = quad(post, 0, hi, **kw)[0]
    m1 = quad(lambda j: np.sqrt(j) * post(j), 0, hi, **kw)[0] / z
    m2 = quad(lambda j: j * post(j), 0, hi, **kw)[0] / z
    return m1, np.sqrt(m2 - m1 * m1)


@pytest.mark.parametrize("centric", [False, True])
def test_posterior_moments_match_quadrature(centric):
    cases = [(1000.0, 10.0, 500.0), (5.0, 10.0, 100.0), (0.0, 10.0, 100.0), (-20.0, 10.0, 100.0),
             (-39.0, 10.0, 100.0), (3.0, 10.0, 1.0), (50.0, 50.0, 50.0)]
    i, s, big_s = (np.array(c) for c in zip(*cases))
    f, sf = french_wilson(i, s, np.full(len(i), 3.0), np.full(len(i), centric), prior=big_s)
    for k, case in enumerate(cases):
        m1, sd = _reference_moments(*case, centric)
        assert f[k] == pytest.approx(m1, rel=1e-5)
        assert sf[k] == pytest.approx(sd, rel=1e-5)


def test_strong_weak_negative_and_rejected():
    i = np.array([1.0e4, -20.0, 0.0, 20.0, -41.0, np.nan])
    s = np.array([10.0, 10.0, 10.0, 10.0, 10.0, 10.0])
    f, sf = french_wilson(i, s, np.full(6, 2.5), np.zeros(6, bool), prior=np.full(6, 200.0))
    assert f[0] == pytest.approx(np.sqrt(1.0e4 - 10.0 ** 2 / 200.0), rel=1e-6)  # ≈ √I
    assert f[0] == pytest.approx(100.0, rel=1e-4)
    assert sf[0] == pytest.approx(10.0 / (2 * 100.0), rel=0.01)  # σF ≈ σI / 2F
    assert 0 < f[1] < f[2] < f[3]  # negative I still gives a small positive F, monotonic in I
    assert f[1] < np.sqrt(2 * 10.0)
    assert np.isnan(f[4]) and np.isnan(sf[4])  # I/σ < −4 rejected
    assert np.isnan(f[5])


@pytest.mark.parametrize("centric", [False, True])
def test_wilson_distributed_data_recover_true_f_better_than_sqrt(centric):
    rng = np.random.default_rng(11)
    n = 40000
    d = rng.uniform(2.0, 4.0, n)
    mean_j = 100.0 * np.exp(-10.0 / (2 * d ** 2))
    if centric:
        j = mean_j * rng.normal(size=n) ** 2
    else:
        j = rng.exponential(mean_j)
    sigma = np.full(n, 0.5) * mean_j.mean()
    i = j + rng.normal(size=n) * sigma
    f, _ = french_wilson(i, sigma, d, np.full(n, centric))
    ok = np.isfinite(f)
    assert ok.mean() > 0.99  # only I/σ < −4 rejected
    f_true = np.sqrt(j[ok])
    rms_fw = np.sqrt(np.mean((f[ok] - f_true) ** 2))
    rms_sqrt = np.sqrt(np.mean((np.sqrt(np.maximum(i[ok], 0)) - f_true) ** 2))
    assert rms_fw < 0.8 * rms_sqrt
    # the posterior mean is unbiased on average
    assert f[ok].mean() == pytest.approx(f_true.mean(), rel=0.01)


def test_wilson_prior_follows_resolution():
    rng = np.random.default_rng(2)
    d = rng.uniform(1.8, 6.0, 20000)
    expected = 500.0 * np.exp(-30.0 / (2 * d ** 2))
    i = rng.exponential(expected)
    prior = wilson_prior(i, d)
    assert np.median(np.abs(prior / expected - 1)) < 0.06


def test_wilson_b_from_shell_means():
    d = np.linspace(8.0, 1.5, 20)
    s2 = 1.0 / (4 * d ** 2)
    for b in (15.0, 35.0, 60.0):
        mean_i = 3000.0 * np.exp(-2 * b * s2)
        assert wilson_b(mean_i, d) == pytest.approx(b, abs=1e-6)
    assert wilson_b([100.0, 90.0], [3.0, 2.0]) is None  # too few shells
    assert wilson_b([100.0, 90.0, 80.0], [9.0, 7.0, 5.0]) is None  # none below 4.5 Å


def test_wilson_b_from_merged_random_intensities():
    rng = np.random.default_rng(5)
    d = 1.0 / np.sqrt(rng.uniform(1 / 6.0 ** 2, 1 / 1.6 ** 2, 30000))
    i = rng.exponential(2000.0 * np.exp(-28.0 / (2 * d ** 2)))
    assert wilson_b_from_merged(i, d) == pytest.approx(28.0, abs=1.0)
    assert wilson_b_from_merged(i[:30], d[:30]) is None

import pytest
import torch

from conceptspace.model.schedule import LogSNRSchedule, alpha_sigma

pytestmark = pytest.mark.usefixtures("one_thread")


def test_endpoints_at_init():
    schedule = LogSNRSchedule()
    gamma = schedule(torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(gamma, torch.tensor([-5.0, 10.0]))
    assert schedule.gamma_min == -5.0 and schedule.gamma_max == 10.0
    assert isinstance(schedule.gamma_min, float) and isinstance(schedule.gamma_max, float)


def test_custom_bounds():
    schedule = LogSNRSchedule(gamma_min=-13.3, gamma_max=5.0)
    torch.testing.assert_close(schedule(torch.tensor([0.0, 1.0])), torch.tensor([-13.3, 5.0]))


def test_variance_preserving():
    gamma = torch.linspace(-20, 20, 101)
    alpha, sigma = alpha_sigma(gamma)
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(gamma))
    # γ is the log noise-to-signal ratio: log(σ²/α²) = γ.
    torch.testing.assert_close(torch.log(sigma**2 / alpha**2), gamma, atol=1e-4, rtol=1e-4)


def test_monotone_even_with_negative_slope():
    schedule = LogSNRSchedule()
    t = torch.linspace(0, 1, 50)
    assert (schedule(t).diff() > 0).all()
    with torch.no_grad():
        schedule.w.neg_()  # |w| keeps γ increasing whatever sign the optimiser gives w
    assert (schedule(t).diff() > 0).all()


def test_parameters_are_trainable():
    schedule = LogSNRSchedule()
    assert {n for n, _ in schedule.named_parameters()} == {"b", "w"}
    schedule(torch.rand(8)).sum().backward()
    assert schedule.b.grad is not None and schedule.w.grad is not None


def test_analytic_slope_matches_autograd():
    schedule = LogSNRSchedule()
    with torch.no_grad():
        schedule.w.fill_(-12.5)
    t = torch.rand(6, requires_grad=True)
    (autograd_slope,) = torch.autograd.grad(schedule(t).sum(), t)
    torch.testing.assert_close(schedule.dgamma_dt(t.detach()), autograd_slope)
    torch.testing.assert_close(autograd_slope, torch.full((6,), 12.5))

"""The dispatch window: how far the host runs ahead of the devices."""

import pytest

from jaxwm.train import dispatch


class _Output:
  """Stands for a dispatched call's output; records when it is waited on."""

  def __init__(self, name, waited):
    self.name, self._waited = name, waited

  def block_until_ready(self):
    self._waited.append(self.name)
    return self


def test_the_host_waits_for_the_call_limit_calls_back():
  waited = []
  window = dispatch.DispatchWindow(limit=3)
  for name in range(3):
    window.push({"loss": _Output(name, waited)})
  assert waited == []  # three calls may be in flight
  for name in range(3, 6):
    window.push({"loss": _Output(name, waited)})
    assert waited[-1] == name - 3
  assert waited == [0, 1, 2]


def test_a_window_needs_room_for_one_call():
  with pytest.raises(ValueError, match="limit=0"):
    dispatch.DispatchWindow(limit=0)

"""workbench.ui.notebook: the live-following loop the tutorial notebooks use."""
import workbench
from workbench.ui.notebook import follow


def test_follow_refreshes_until_the_run_ends_and_once_after(tmp_path):
    handle = workbench.start_training(method="simclr", dataset="digits", epochs=2, runs_dir=str(tmp_path),
                                      progress=False, probe_size=100)
    seen = []
    result = follow(handle, lambda reader: seen.append((reader.status().state, reader.status().step)), every=0.05)
    assert result.status == "finished"
    assert seen and seen[-1] == ("finished", result.step)  # the last refresh saw the finished run
    assert [s for _, s in seen] == sorted(s for _, s in seen)  # steps only move forward


class _Interrupting:
    """A handle whose run "trains" until stopped; the first refresh raises KeyboardInterrupt (Ctrl-C)."""

    def __init__(self, run_dir):
        self.run_dir, self.stopped = run_dir, False

    def is_alive(self):
        return not self.stopped

    def stop(self):
        self.stopped = True

    def join(self):
        return "joined"


def test_interrupting_the_kernel_stops_the_run(tmp_path, capsys):
    handle = workbench.start_training(method="simclr", dataset="digits", epochs=1, runs_dir=str(tmp_path),
                                      progress=False, probe_size=100)
    handle.join()
    fake = _Interrupting(handle.run_dir)

    def refresh(reader):
        raise KeyboardInterrupt

    assert follow(fake, refresh) == "joined" and fake.stopped
    assert "stop requested" in capsys.readouterr().out


def test_redraw_on_change_draws_once_then_again_for_each_control_change(capsys):
    import ipywidgets as widgets

    from workbench.ui.notebook import redraw_on_change

    shown = []

    class Figure:  # stands in for a plotly figure: records what was shown
        def __init__(self, value):
            self.value = value

        def show(self):
            shown.append(self.value)

    a, b = widgets.IntSlider(1, 0, 9), widgets.IntSlider(5, 0, 9)
    redraw_on_change(lambda: Figure((a.value, b.value)), [a, b])
    assert shown == [(1, 5)]  # the first figure, drawn at once
    a.value = 2
    b.value = 7
    assert shown == [(1, 5), (2, 5), (2, 7)]

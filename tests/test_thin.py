"""Long runs at chart resolution (workbench.ui.thin): every value counted (each bucket's min, max, count and mean
are the data's), the newest steps exact, the store's per-bucket query equal to the same summary in numpy, and a
live follower equal to reading the run afresh."""
import numpy as np
import pandas as pd
import pytest

from workbench.runs import RunReader, RunWriter
from workbench.ui import charts
from workbench.ui.thin import ScalarFollower, ThinSeries, bucket_width, ema, summarise, thin


def noisy(n: int, seed: int = 0) -> pd.Series:
    rng = np.random.default_rng(seed)
    v = np.exp(-np.arange(n) / n) + 0.1 * rng.normal(size=n)
    v[n // 3] = 9.0  # a spike that a sampled curve would lose
    return pd.Series(v, index=pd.Index(np.arange(1, n + 1), name="step"))


def test_thinning_keeps_each_buckets_min_max_count_mean_and_the_last_values_exactly():
    s = noisy(20_000)
    t = thin(s, target=500)
    assert t.thinned and len(t) < 1_100
    w = t.width
    assert w == bucket_width(20_000, 500)
    sealed = 20_000 // w * w
    summarised = t.count > 1
    for first, last, lo, hi, n, mean in zip(t.first[summarised], t.last[summarised], t.lo[summarised],
                                            t.hi[summarised], t.count[summarised], t.value[summarised]):
        assert first // w == last // w  # one bucket
        part = s[(s.index >= first // w * w) & (s.index < (first // w + 1) * w)]
        assert (n, lo, hi) == (len(part), part.min(), part.max())
        assert mean == pytest.approx(part.mean())
    assert t.hi.max() == 9.0  # the spike is in the picture
    tail = s[s.index >= sealed]
    assert t.steps[-len(tail):].tolist() == tail.index.tolist()  # the newest steps, exact
    assert t.value[-len(tail):].tolist() == tail.tolist()
    assert t.value[-1] == s.iloc[-1]
    assert t.count.sum() == len(s)  # every value counted once


def test_short_series_and_nans_stay_exact():
    s = noisy(500)
    s.iloc[10] = np.nan
    t = thin(s)
    assert not t.thinned and t.width == 0
    assert t.steps.tolist() == s.dropna().index.tolist() and t.value.tolist() == s.dropna().tolist()


def test_a_bucket_with_one_value_is_that_value_at_its_step():
    s = noisy(10_000)
    sparse = s[s.index % 1000 == 7]  # e.g. kNN accuracy, once an epoch
    long = pd.DataFrame({"step": sparse.index, "key": "knn", "value": sparse.values})
    t = ThinSeries.join(summarise(long, 64), pd.Series(dtype=float), 64)
    assert not t.thinned
    assert t.steps.tolist() == sparse.index.tolist() and t.value.tolist() == sparse.tolist()


def test_ema_over_buckets_is_pandas_ewm_where_nothing_is_summarised():
    s = noisy(300)
    t = ThinSeries.exact(s)
    np.testing.assert_allclose(ema(t, 0.9), s.ewm(alpha=0.1).mean().to_numpy())
    assert ema(t, 0.0) is t.value
    long = thin(noisy(50_000), target=400)  # a bucket of equal values counts as that many values
    flat = pd.Series(np.repeat(long.value, long.count))
    np.testing.assert_allclose(ema(long, 0.99)[-1], flat.ewm(alpha=0.01).mean().iloc[-1])


@pytest.fixture
def long_run(tmp_path):
    rng = np.random.default_rng(3)
    w = RunWriter(tmp_path / "long", {"method": "simclr", "dataset": "digits"})
    con = w._con
    con.execute("BEGIN")
    rows = [(s, k, float(rng.normal())) for s in range(1, 6001) for k in ("loss", "lr", "pos_mean")]
    rows += [(s, "knn_acc", float(rng.random())) for s in range(500, 6001, 500)]
    rows = [(s, k, None if (s, k) == (77, "loss") else v) for s, k, v in rows]  # a NaN: stored as NULL
    con.executemany("INSERT INTO scalars VALUES (?, ?, ?)", rows)
    con.execute("COMMIT")
    w.close("finished")
    return tmp_path / "long"


def test_the_stores_bucket_query_gives_the_numpy_summary(long_run):
    with RunReader(long_run) as r:
        full = r.scalars()
        for width, stop, start, keys in ((64, 6001, 0, None), (100, 3000, 250, ["loss", "knn_acc"])):
            got = r.scalar_buckets(width, stop, keys, start=start)
            long = full.rename_axis("step").reset_index().melt(id_vars="step", var_name="key", value_name="value")
            long = long[(long["step"] >= start) & (long["step"] < stop)]
            if keys:
                long = long[long["key"].isin(keys)]
            want = summarise(long, width)
            got = got.sort_values(["key", "bucket"]).reset_index(drop=True)
            pd.testing.assert_frame_equal(got[["key", "bucket", "count", "first", "last"]],
                                          want[["key", "bucket", "count", "first", "last"]], check_dtype=False)
            np.testing.assert_allclose(got[["min", "max", "sum"]].to_numpy(), want[["min", "max", "sum"]].to_numpy())
        assert r.first_value("loss") == full["loss"].dropna().iloc[0]
        assert r.first_value("nothing") is None


def assert_matches_the_data(f: ScalarFollower, full: pd.DataFrame, keys: list[str]) -> None:
    """What ``f`` holds is the summary, at its width, of the data before its sealed step, then the data exactly."""
    for key in keys:
        s = full[key].dropna()
        got = f.series(key)
        if f.width == 0:
            assert got.steps.tolist() == s.index.tolist() and got.value.tolist() == s.tolist()
            continue
        before = s[s.index < f.sealed]
        want = ThinSeries.join(summarise(pd.DataFrame({"step": before.index, "key": key, "value": before.values}),
                                         f.width), s[s.index >= f.sealed], f.width)
        for field in ("steps", "lo", "hi", "count", "first", "last"):
            assert getattr(got, field).tolist() == getattr(want, field).tolist(), field
        np.testing.assert_allclose(got.value, want.value)
        assert got.value[-1] == s.iloc[-1] and got.count.sum() == len(s)


def test_a_live_follower_equals_a_fresh_read_through_growth_and_widening(tmp_path):
    w = RunWriter(tmp_path / "live", {"method": "simclr", "dataset": "digits"})
    keys = ["loss", "knn_acc"]
    live = ScalarFollower(tmp_path / "live", keys, target=50, exact_up_to=100)
    rng = np.random.default_rng(0)
    step, widths = 0, set()
    for chunk in (40, 70, 300, 1, 900, 5, 2000):  # exact, then thinned, then wider buckets (several doublings)
        for _ in range(chunk):
            step += 1
            w.log(step, {"loss": float(rng.normal()), "lr": 0.1})
        w.log(step, {"knn_acc": float(rng.random())})  # logged after the step's other values
        live.refresh()
        with RunReader(tmp_path / "live") as r:
            full = r.scalars()
        fresh = ScalarFollower(tmp_path / "live", keys, target=50, exact_up_to=100).refresh()
        assert_matches_the_data(live, full, keys)
        assert_matches_the_data(fresh, full, keys)
        assert "lr" not in live  # only the keys asked for are read
        assert step // live.width <= 2 * 50 if live.width else step <= 100
        widths.add(live.width)
        fresh.close()
    assert len(widths) >= 3  # exact, then at least one doubling
    live.close()
    w.close("finished")


def test_a_follower_starts_again_when_steps_are_discarded(tmp_path):
    w = RunWriter(tmp_path / "r", {"method": "simclr", "dataset": "digits"})
    for s in range(1, 301):
        w.log(s, {"loss": 1.0})
    f = ScalarFollower(tmp_path / "r", target=20, exact_up_to=50).refresh()
    w.discard_after(100)  # a resumed run goes on from its checkpoint
    for s in range(101, 121):
        w.log(s, {"loss": 2.0})
    f.refresh()
    assert f.series("loss").count.sum() == 120 and f.series("loss").value[-1] == 2.0
    w.close("finished")


def test_overlay_draws_a_band_and_says_so_only_for_a_long_run(long_run):
    with RunReader(long_run) as r:
        df = r.scalars()
    short = df.iloc[:100]
    fig = charts.overlay({"short": short}, "loss", "loss")
    assert [t.name for t in fig.data] == ["short"] and not fig.layout.title.subtitle.text
    f = ScalarFollower(long_run, ["loss"], target=100, exact_up_to=200).refresh()
    fig = charts.overlay({"long": f, "frame": df}, "loss", "loss")
    assert [t.name for t in fig.data] == ["long min", "long max", "long", "frame min", "frame max", "frame"]
    assert "mean of up to" in fig.layout.title.subtitle.text
    assert fig.data[1].fill == "tonexty" and max(fig.data[1].y) == df["loss"].max()
    assert fig.data[2].y[-1] == df["loss"].iloc[-1]


def test_heatmap_columns_sum_consecutive_histograms_and_keep_the_last():
    steps = np.arange(10, 10_001, 10)
    counts = np.random.default_rng(0).integers(0, 50, (len(steps), 20))
    x, c, group = charts.histogram_columns(steps, counts, max_columns=100)
    assert len(x) <= 100 and group > 1
    assert c.sum() == counts.sum()  # every logged histogram counted
    assert (c[-1] == counts[-1]).all() and x[-1] == steps[-1]
    np.testing.assert_array_equal(c[0], counts[:group].sum(0))
    x, c, group = charts.histogram_columns(steps[:50], counts[:50], max_columns=100)
    assert group == 1 and (c == counts[:50]).all()


def test_a_key_logged_once_an_epoch_is_summarised_once_not_at_every_refresh(long_run):
    f = ScalarFollower(long_run, ["knn_acc"], target=100, exact_up_to=200)
    calls = []
    real = f.reader.scalar_buckets
    f.reader.scalar_buckets = lambda *a, **k: calls.append(a) or real(*a, **k)
    for _ in range(3):
        f.refresh()
    assert len(calls) == 1 and f.last_step == 6000
    s = f.series("knn_acc")
    assert s.count.sum() == 12 and not s.thinned  # one value a bucket: each exact, at its step
    assert s.steps.tolist() == list(range(500, 6001, 500))


def test_followers_of_one_run_share_the_summaries_of_its_older_steps(tmp_path):
    w = RunWriter(tmp_path / "r", {"method": "simclr", "dataset": "digits"})
    for s in range(1, 3001):
        w.log(s, {"loss": float(s % 7)})
    first = ScalarFollower(tmp_path / "r", ["loss"], target=50, exact_up_to=100).refresh()
    for s in range(3001, 3401):
        w.log(s, {"loss": float(s % 7)})
    second = ScalarFollower(tmp_path / "r", ["loss"], target=50, exact_up_to=100)
    calls = []
    real = second.reader.scalar_buckets
    second.reader.scalar_buckets = lambda *a, **k: calls.append(k.get("start")) or real(*a, **k)
    second.refresh()
    assert calls == [first.sealed]  # only the buckets sealed since the first follower read
    with RunReader(tmp_path / "r") as r:
        assert_matches_the_data(second, r.scalars(), ["loss"])
    first.close(), second.close()
    w.close("finished")

"""Figure helpers: a panel without data says so; labels are laid out."""

from __future__ import annotations

from pathlib import Path

from pathcond.experiments._plot import pyplot, save


def test_empty_panels_say_so_and_the_png_is_written(tmp_path: Path) -> None:
    plt = pyplot()
    fig, (full, empty, no_points) = plt.subplots(1, 3)
    full.plot([1, 2], [3, 4])
    no_points.errorbar([], [], yerr=[], marker="o")  # what a grid draws with no units yet
    texts: list[list[str]] = []
    original = fig.savefig

    def spy(*args: object, **kwargs: object) -> None:
        texts.extend([[t.get_text() for t in ax.texts] for ax in fig.axes])
        original(*args, **kwargs)

    fig.savefig = spy  # type: ignore[method-assign]
    path = save(fig, tmp_path / "f.png")
    assert path.is_file() and path.stat().st_size > 0
    assert texts == [[], ["no finished runs yet"], ["no finished runs yet"]]


def test_note_goes_under_the_title(tmp_path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    fig.suptitle("Fig 5")
    titles: list[str] = []
    original = fig.savefig

    def spy(*args: object, **kwargs: object) -> None:
        titles.append(fig.get_suptitle())
        original(*args, **kwargs)

    fig.savefig = spy  # type: ignore[method-assign]
    save(fig, tmp_path / "f.png", note="UNFINISHED")
    assert titles == ["Fig 5\nUNFINISHED"]

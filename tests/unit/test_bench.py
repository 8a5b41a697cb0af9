"""The benchmark harness on a 5-page generated site: generator, measurement, logs, dispatch (no timing)."""

from __future__ import annotations

import re
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("psutil", reason="psutil comes with the bench extra: pip install -e '.[bench]'")

import psutil

from bench.__main__ import main as bench_main
from bench.crawl_vs_scrapy import Round, median_round
from bench.harness import AuditRun
from bench.large_site import crawl_sizes, generate_site, page_links, page_path, write_sitemaps
from bench.measure import Measurement, _proc_children, _Sampler, run_measured
from bench.serve import StaticServer, nginx_config

PAGES = 5


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return generate_site(tmp_path / "site", PAGES)


def test_generator_writes_every_page_and_only_links_to_existing_pages(site: Path) -> None:
    files = sorted(path.relative_to(site).as_posix() for path in site.rglob("*.html"))
    assert files == ["index.html", "p/000/1.html", "p/000/2.html", "p/000/3.html", "p/000/4.html"]
    for path in site.rglob("*.html"):
        html = path.read_text()
        assert "<title>" in html and "<h1>" in html and 'name="description"' in html
        for href in re.findall(r'href="([^"]+)"', html):
            target = site / ("index.html" if href == "/" else href.lstrip("/"))
            assert target.exists(), href


def test_generator_is_deterministic_tree_plus_cross_links(tmp_path: Path) -> None:
    first = generate_site(tmp_path / "one", PAGES)
    second = generate_site(tmp_path / "two", PAGES)
    for path in first.rglob("*.html"):
        assert path.read_text() == (second / path.relative_to(first)).read_text()
    assert page_links(0, 100)[:10] == list(range(1, 11))  # the home page's children
    assert page_links(15, 100)[0] == 1  # parent first
    assert all(0 <= target < 100 for index in range(100) for target in page_links(index, 100))
    assert page_path(0) == "/" and page_path(12345) == "/p/012/12345.html"


def test_sitemaps_list_every_page_with_absolute_urls(site: Path) -> None:
    written = write_sitemaps(site, "http://127.0.0.1:8080/", PAGES)
    assert [path.name for path in written] == ["robots.txt", "sitemap.xml", "sitemap-1.xml"]
    assert "Sitemap: http://127.0.0.1:8080/sitemap.xml" in (site / "robots.txt").read_text()
    locs = re.findall(r"<loc>([^<]+)</loc>", (site / "sitemap-1.xml").read_text())
    assert locs == ["http://127.0.0.1:8080/"] + [f"http://127.0.0.1:8080/p/000/{i}.html" for i in range(1, 5)]
    assert "sitemap-1.xml" in (site / "sitemap.xml").read_text()


def test_crawl_sizes_are_ten_thirty_and_hundred_percent() -> None:
    assert crawl_sizes(100_000) == [10_000, 30_000, 100_000]
    assert crawl_sizes(PAGES) == [1, PAGES]


def test_marginal_time_per_page_cancels_fixed_start_up(tmp_path: Path) -> None:
    from bench.harness import AuditRun
    from bench.large_site import _marginal_ms_per_page
    from bench.measure import Measurement

    def run(pages: int, wall: float) -> AuditRun:
        measured = Measurement(["x"], 0, wall, wall, 0, 1, 1, False, tmp_path / "o", tmp_path / "e")
        return AuditRun(measurement=measured, report={"stats": {"pages_fetched": pages}})

    runs = {10: run(10, 20.0), 30: run(30, 22.0), 100: run(100, 29.0)}  # 20 s start-up + 0.1 s/page
    marginal = _marginal_ms_per_page(runs)
    assert set(marginal) == {30, 100}
    assert marginal[30] == pytest.approx(100.0) and marginal[100] == pytest.approx(100.0)


def test_measurement_counts_the_whole_process_tree(tmp_path: Path) -> None:
    grandchild = "b = bytearray(96 * 1024 * 1024); import time; time.sleep(1.0)"
    child = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {grandchild!r}], check=True)"
    measured = run_measured([sys.executable, "-c", child], timeout_seconds=120, log_dir=tmp_path, name="tree")
    assert measured.returncode == 0 and not measured.timed_out
    assert measured.peak_processes == 2
    assert measured.peak_rss_mib >= 96
    assert measured.samples > 0
    assert measured.stdout_path.exists() and measured.stderr_path.exists()


@pytest.mark.skipif(_proc_children(1) is None, reason="this kernel has no /proc/PID/task/TID/children")
def test_the_proc_sampler_sees_the_same_tree_and_memory_as_psutil() -> None:
    grandchild = "b = bytearray(64 * 1024 * 1024); import time; time.sleep(30)"
    child = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {grandchild!r}])"
    proc = psutil.Popen([sys.executable, "-c", child])
    try:
        while len(proc.children(recursive=True)) < 1 or proc.children()[0].memory_info().rss < 64 << 20:
            time.sleep(0.05)
        by_proc, by_psutil = _Sampler(proc, 0.02, use_proc=True), _Sampler(proc, 0.02, use_proc=False)
        for sampler in (by_proc, by_psutil):
            for _ in range(5):
                sampler.sample_once()
        assert by_proc.peak_processes == by_psutil.peak_processes == 2
        assert set(by_proc.seen) == set(by_psutil.seen)
        assert abs(by_proc.peak_rss - by_psutil.peak_rss) < 4 << 20  # both read the same RSS counters
        assert by_proc.peak_rss >= 64 << 20
    finally:
        for process in [proc, *proc.children(recursive=True)]:
            process.kill()
        proc.wait()


def test_timeout_kills_the_tree_including_grandchildren(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    child = textwrap.dedent(
        f"""
        import pathlib, subprocess, sys, time
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        pathlib.Path({str(pid_file)!r}).write_text(str(proc.pid))
        time.sleep(600)
        """
    )
    measured = run_measured([sys.executable, "-c", child], timeout_seconds=3, log_dir=tmp_path, name="stuck")
    assert measured.timed_out
    grandchild = int(pid_file.read_text())
    assert not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE


def test_access_log_status_counts_since_an_offset(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text("200 GET /\n404 GET /robots.txt\n")
    server = StaticServer(kind="python", base_url="http://x/", root=tmp_path, access_log=log, pid=0)
    offset = server.log_offset()
    with log.open("a") as stream:
        stream.write("304 GET /\n304 GET /a.html\n200 GET /b.html\n")
    assert server.status_counts() == {"200": 2, "304": 2, "404": 1}
    assert server.status_counts(offset) == {"200": 1, "304": 2}


def test_nginx_config_serves_the_root_on_loopback_only(tmp_path: Path) -> None:
    config = nginx_config(tmp_path / "site", 8123, tmp_path)
    assert "listen 127.0.0.1:8123;" in config
    assert f"root {tmp_path / 'site'};" in config
    assert "daemon off;" in config


def test_scrapy_peer_extracts_title_h1_and_description(site: Path) -> None:
    pytest.importorskip("scrapy", reason="scrapy comes with the bench extra")
    from scrapy.http import HtmlResponse

    from bench.scrapy_peer import extract_page

    body = (site / "p/000/3.html").read_bytes()
    response = HtmlResponse(url="http://127.0.0.1/p/000/3.html", body=body, encoding="utf-8")
    item = extract_page(response)
    assert item["title"] == "Page 3 of the bench site"
    assert item["h1"] == "Page 3"
    assert item["description"].startswith("Generated page 3 of 5")


def test_bench_lists_benchmarks_and_rejects_unknown_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main([]) == 0
    assert "crawl_vs_scrapy" in capsys.readouterr().out
    assert bench_main(["nope"]) == 2


def test_the_median_round_is_the_pair_with_the_middle_ratio() -> None:
    def round_of(scrapy_seconds: float, audit_seconds: float) -> Round:
        def measured(seconds: float) -> Measurement:
            return Measurement([], 0, seconds, seconds, 100 << 20, 1, 1, False, Path("o"), Path("e"))

        served = AuditRun(measured(audit_seconds), {"stats": {"pages_fetched": 500, "pages_per_second": 250}})
        summary = {"pages": 500, "crawl_seconds": scrapy_seconds - 1}
        return Round(measured(scrapy_seconds), summary, {"200": 500}, served)

    fast, middle, slow = round_of(30, 5), round_of(30, 7.5), round_of(20, 10)
    assert [item.ratio for item in (fast, middle, slow)] == pytest.approx([6.0, 4.0, 2.0])
    assert median_round([slow, fast, middle]) is middle
    assert median_round([slow, fast]) is slow  # the lower of the two middle ones: never the flattering one
    assert middle.crawl_ratio == pytest.approx(250 / (500 / 29))

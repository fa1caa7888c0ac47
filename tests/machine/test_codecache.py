"""Translated units' code objects are kept on disk between runs
(``tvmm.machine.codecache``); what runs is what compiling would give, and a
cache that is off, unusable or damaged only means compiling."""

from __future__ import annotations

import os

import pytest

from tvmm.machine import codecache

from .test_translate import _run

# 1: mov eax,[esi] ; add eax,ecx ; xor eax,0x5a5a5a5a ; mov [esi],eax ;
#    add esi,4 ; and esi,0xff ; or esi,0x2000 ; dec ecx ; jnz 1b ; hlt
LOOP = bytes.fromhex("8b0601c8355a5a5a5a890683c60481e6ff00000081ce002000004975e4f4")


def _counts():
    return codecache.hits, codecache.misses


def _translated_run():
    state, m = _run(LOOP, True, regs={1: 1000, 6: 0x2000})
    assert any(b.fn is not None for b in m.cpu.blocks.values())
    return state


def test_a_second_run_loads_the_units_the_first_compiled(tmp_path, monkeypatch):
    monkeypatch.setenv("TVMM_CODE_CACHE", str(tmp_path / "units"))
    interpreted, _ = _run(LOOP, False, regs={1: 1000, 6: 0x2000})
    h0, m0 = _counts()
    first = _translated_run()
    h1, m1 = _counts()
    assert m1 > m0 and h1 == h0                          # compiled, and stored
    assert len(os.listdir(tmp_path / "units")) == m1 - m0
    second = _translated_run()
    h2, m2 = _counts()
    assert h2 - h1 == m1 - m0 and m2 == m1              # every unit loaded, none compiled
    assert first == second == interpreted


def test_a_damaged_file_is_compiled_again_and_replaced(tmp_path, monkeypatch):
    units = tmp_path / "units"
    monkeypatch.setenv("TVMM_CODE_CACHE", str(units))
    good = _translated_run()
    for f in units.iterdir():
        f.write_bytes(b"\xe3 not marshal data")
    _, m0 = _counts()
    assert _translated_run() == good
    _, m1 = _counts()
    assert m1 - m0 == len(list(units.iterdir()))         # each damaged file compiled again...
    h0, _ = _counts()
    assert _translated_run() == good
    assert _counts()[0] - h0 == m1 - m0                  # ...and rewritten whole


@pytest.mark.parametrize("setting", ["off", ""])
def test_off_writes_nothing(tmp_path, monkeypatch, setting):
    monkeypatch.setenv("TVMM_CODE_CACHE", setting)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert codecache.cache_dir() is None
    _translated_run()
    assert list(tmp_path.iterdir()) == []


def test_an_unusable_directory_means_compiling(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("TVMM_CODE_CACHE", str(blocker / "units"))
    interpreted, _ = _run(LOOP, False, regs={1: 1000, 6: 0x2000})
    _, m0 = _counts()
    assert _translated_run() == interpreted
    assert _counts()[1] > m0


def test_the_default_directory_follows_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.delenv("TVMM_CODE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert codecache.cache_dir() == os.path.join(str(tmp_path), "tvmm", "units")

"""Issue 33's classes of outside file, each through its one reader: a typed error naming the file
(and the field or index), never "internal error", a traceback or a hang. Inputs are generated here."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgeship.config import load_config
from edgeship.data import load_arrays, load_image
from edgeship.errors import EdgeshipError, FormatError, InputError, SecurityError
from edgeship.manifest import read_manifest
from edgeship.profiles import load_profile
from edgeship.sources import load_source, sniff_format

EDGESHIP = str(Path(sys.executable).parent / "edgeship")


def cli(args, env, cwd, timeout=120):
    return subprocess.run([EDGESHIP, *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=timeout)


def refused(r, code=3, *words):
    assert r.returncode == code, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr[-2000:]
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1, r.stderr[-2000:]
    for w in words:
        assert w in err[0], err[0]


# ---- data files given to --calib / --eval ----------------------------------------------------

@pytest.mark.parametrize("make, words", [
    (lambda p: np.savez(p, x=np.frombuffer(b"abcd" * 64, dtype="S4")), ("'x'", "bytes")),
    (lambda p: np.save(p, np.array(3.0, np.float32)), ("0-d",)),
    (lambda p: np.save(p, np.array(["a", "b"])), ("strings",)),
    (lambda p: np.save(p, np.where(np.arange(48).reshape(2, 24) == 7, np.nan, 1.0).astype(np.float32)),
     ("NaN", "[0, 7]")),
    (lambda p: np.save(p, np.where(np.arange(48).reshape(2, 24) == 30, np.inf, 1.0)), ("infinite", "[1, 6]")),
    (lambda p: np.save(p, np.ones(4, np.complex64)), ("complex",)),
])
def test_data_files_that_are_not_numbers_are_refused_by_name(tmp_path, make, words):
    p = tmp_path / "data.npy"
    make(p)
    p = next(tmp_path.iterdir())  # np.savez adds .npz
    with pytest.raises(InputError) as e:
        load_arrays(p)
    assert str(p) in str(e.value) and all(w in str(e.value) for w in words), str(e.value)


def test_a_zero_d_array_as_calibration_data_is_an_input_error_not_an_internal_one(tiny_onnx, tmp_path, cli_env):
    np.save(tmp_path / "zero.npy", np.array(3.0, np.float32))
    r = cli(["quantize", tiny_onnx, "--calib", tmp_path / "zero.npy", "--out", tmp_path / "q"], cli_env, tmp_path, 300)
    refused(r, 3, "0-d")
    assert not (tmp_path / "q").exists()


# ---- images ----------------------------------------------------------------------------------

def _png(size=(24, 16), color=(200, 30, 30)) -> bytes:
    from PIL import Image

    b = io.BytesIO()
    Image.new("RGB", size, color).save(b, "PNG")
    return b.getvalue()


def test_a_png_with_a_broken_chunk_is_a_format_error(tmp_path, tiny_onnx, cli_env):
    """The IDAT chunk's length says 43 bytes where there are ~3,000: the next "chunk" starts inside
    the image data, and Pillow raises SyntaxError ("broken PNG file"), which was not caught."""
    from PIL import Image

    b = io.BytesIO()
    Image.fromarray((np.random.RandomState(0).rand(32, 32, 3) * 255).astype(np.uint8)).save(b, "PNG")
    raw = bytearray(b.getvalue())
    struct.pack_into(">I", raw, raw.find(b"IDAT") - 4, 43)
    (tmp_path / "broken.png").write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="broken.png is not a readable image"):
        load_image(tmp_path / "broken.png")
    refused(cli(["classify", tiny_onnx, tmp_path / "broken.png"], cli_env, tmp_path), 3, "not a readable image")


def test_an_image_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "x.png")
    with pytest.raises(InputError, match="FIFO"):
        load_image(tmp_path / "x.png")


def test_exif_orientation_and_16_bit_images(tmp_path):
    from PIL import Image

    a = np.zeros((10, 30, 3), np.uint8)
    a[:, :5] = 255  # a white band on the left of a wide picture
    im = Image.fromarray(a)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to show": stored sideways
    im.save(tmp_path / "tagged.jpg", exif=exif.tobytes(), quality=95)
    shown = load_image(tmp_path / "tagged.jpg")
    assert shown.shape == (30, 10, 3) and shown[:5].mean() > 200 and shown[-5:].mean() < 50  # the band is on top
    g = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    Image.fromarray(g).save(tmp_path / "g16.png")
    rgb = load_image(tmp_path / "g16.png")
    assert rgb.dtype == np.uint8 and rgb.min() == 0 and 250 <= rgb.max() <= 255 and 100 < rgb.mean() < 155


# ---- zip archives: .pt2 ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def pt2(tmp_path_factory) -> Path:
    import torch

    p = tmp_path_factory.mktemp("pt2") / "ok.pt2"
    torch.export.save(torch.export.export(torch.nn.Linear(4, 2), (torch.randn(1, 4),)), p)
    return p


def _patch_central(raw: bytes, field: int, value: int) -> bytes:
    """Set a 2-byte field of every member in the archive's own central directory (and local headers)."""
    z = zipfile.ZipFile(io.BytesIO(raw))
    buf = bytearray(raw)
    pos = z.start_dir
    for info in z.infolist():
        struct.pack_into("<H", buf, pos + field, value)
        local = {8: 6, 10: 8, 6: 4}[field]
        struct.pack_into("<H", buf, info.header_offset + local, value)
        n, m, k = struct.unpack_from("<HHH", buf, pos + 28)
        pos += 46 + n + m + k
    return bytes(buf)


def test_a_pt2_whose_names_are_flagged_utf8_but_are_not(pt2, tmp_path):
    raw = pt2.read_bytes()
    info = zipfile.ZipFile(pt2).infolist()[0]
    assert info.flag_bits & 0x800  # torch.export.save flags its names UTF-8
    name = info.filename.encode()
    (tmp_path / "m.pt2").write_bytes(raw.replace(name, name[:-1] + b"\xff"))
    with pytest.raises(FormatError, match="flagged UTF-8"):
        load_source(str(tmp_path / "m.pt2"))


@pytest.mark.parametrize("field, value, words", [(6, 64, "zip file version 6.4"), (10, 99, "compression method 99")])
def test_a_pt2_that_needs_zip_features_the_reader_lacks(pt2, tmp_path, field, value, words):
    (tmp_path / "m.pt2").write_bytes(_patch_central(pt2.read_bytes(), field, value))
    with pytest.raises(FormatError, match=words):
        sniff_format(tmp_path / "m.pt2")


def test_a_damaged_pt2_member_is_a_format_error_not_a_pickle_alarm(pt2, tmp_path):
    z = zipfile.ZipFile(pt2)
    member = next(i for i in z.infolist() if "sample_inputs" in i.filename)
    raw = bytearray(pt2.read_bytes())
    n, extra = struct.unpack_from("<HH", raw, member.header_offset + 26)  # the local header's own lengths
    start = member.header_offset + 30 + n + extra
    raw[start:start + 4] = b"XXXX"  # the nested checkpoint's own zip header, stored: the CRC check fails first
    (tmp_path / "m.pt2").write_bytes(bytes(raw))
    with pytest.raises(EdgeshipError) as e:
        load_source(str(tmp_path / "m.pt2"))
    assert type(e.value) is FormatError and "can run code" not in str(e.value), str(e.value)


# ---- ONNX ------------------------------------------------------------------------------------

def test_onnx_names_that_are_not_utf8_are_refused_by_field(tiny_onnx, tmp_path, cli_env):
    import onnx

    m = onnx.load(str(tiny_onnx / "model.onnx"))
    name = m.graph.node[0].name.encode()
    raw = m.SerializeToString().replace(name, name[:-1] + b"\xff", 1)
    (tmp_path / "m.onnx").write_bytes(raw)
    with pytest.raises(FormatError, match=r"graph\.node\[0\]\.name is not UTF-8"):
        load_source(str(tmp_path / "m.onnx"))
    refused(cli(["deploy", tmp_path / "m.onnx", "--out", tmp_path / "out", "--targets", "onnx"], cli_env, tmp_path, 300),
            3, "not UTF-8")
    assert not (tmp_path / "out").exists()


# ---- configs and profiles --------------------------------------------------------------------

@pytest.mark.parametrize("name, content, words", [
    ("c.yaml", b"targets: [onnx\nquantize: : :\n", ("not valid YAML", "line")),
    ("c.yaml", "targets: [onnx]\n# caf\xe9\n".encode("latin-1"), ("not UTF-8", "line 2")),
    ("c.json", b"[" * 100_000 + b"]" * 100_000, ("deeper than 64 levels",)),
    ("c.json", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, ("deeper than 64 levels",)),
    ("c.yaml", b"a: &x [1, 2]\nb: *x\n", ("alias",)),
    ("c.yaml", b"- " * 2000 + b"x\n", ("deeper",)),
    ("c.json", b'{"a": nan}', ("not valid JSON",)),
])
def test_config_and_profile_files_give_typed_errors(tmp_path, name, content, words):
    p = tmp_path / name
    p.write_bytes(content)
    for read in (load_config, load_profile):
        with pytest.raises(FormatError) as e:
            read(p)
        assert str(p) in str(e.value) and all(w in str(e.value) for w in words), str(e.value)


def test_a_deep_config_on_the_command_line(tmp_path, cli_env):
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    refused(cli(["deploy", "tinymodels:tiny_classifier", "--config", tmp_path / "deep.json", "--out", tmp_path / "o"],
                cli_env, tmp_path), 3, "levels")


# ---- paths -----------------------------------------------------------------------------------

def test_out_below_a_regular_file(tmp_path, cli_env):
    (tmp_path / "afile").write_text("x")
    refused(cli(["deploy", "tinymodels:tiny_classifier", "--out", tmp_path / "afile" / "out"], cli_env, tmp_path),
            3, "is a file, not a folder")
    assert (tmp_path / "afile").read_text() == "x"


def test_a_manifest_that_is_a_symlink_is_refused_and_its_target_untouched(tiny_onnx, tmp_path, cli_env):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(tiny_onnx.parent, out)
    target = tmp_path / "elsewhere.json"
    target.write_text((out / "manifest.json").read_text())
    (out / "manifest.json").unlink()
    (out / "manifest.json").symlink_to(target)
    before = target.read_text()
    with pytest.raises(SecurityError, match="symbolic link"):
        read_manifest(out)
    refused(cli(["deploy", "tinymodels:tiny_classifier", "--out", out], cli_env, tmp_path), 6, "symbolic link")
    assert target.read_text() == before and (out / "manifest.json").is_symlink()


def test_a_model_that_is_a_fifo_does_not_block_the_cli(tmp_path, cli_env):
    os.mkfifo(tmp_path / "m.onnx")
    refused(cli(["deploy", tmp_path / "m.onnx", "--out", tmp_path / "o"], cli_env, tmp_path, timeout=60), 3, "FIFO")
    refused(cli(["analyze", tmp_path / "m.onnx"], cli_env, tmp_path, timeout=60), 3, "FIFO")


def test_json_records_read_what_python_writes(tmp_path):
    from edgeship.readers import parse_json, read_json

    assert parse_json('{"a": NaN, "b": "[[[["}', "x")["b"] == "[[[["  # brackets in strings do not nest
    with pytest.raises(FormatError, match="not valid JSON"):
        parse_json('{"a": 1,}', "x")
    (tmp_path / "r.json").write_bytes(b'\xef\xbb\xbf{"a": 1}')  # a BOM is fine
    assert read_json(tmp_path / "r.json", "record") == {"a": 1}


# ---- what the fuzzer found (tests/security/fuzz.py), one case each --------------------------------

class _Pwn:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _rezip(src: Path, dest: Path, edit) -> None:
    """Copy the archive ``src`` member by member through ``edit(zout, info, data)`` (it writes)."""
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dest, "w") as b:
        for i in a.infolist():
            edit(b, i, a.read(i))


def test_a_pt2_with_a_member_twice_runs_nothing(pt2, tmp_path):
    import pickle

    marker = tmp_path / "PWNED"

    def edit(zout, info, data):
        if info.filename.endswith("/data/sample_inputs/model.pt"):
            for _ in range(2):
                zout.writestr(info.filename, pickle.dumps(_Pwn(str(marker)), protocol=2))
        zout.writestr(info, data)  # the last copy, the real one, is what a dict of names vets

    _rezip(pt2, tmp_path / "m.pt2", edit)
    with pytest.raises(SecurityError, match="appears twice"):
        load_source(str(tmp_path / "m.pt2"))
    assert not marker.exists()


def test_a_pt2_opaque_object_marked_raw_runs_nothing(pt2, tmp_path):
    import pickle

    marker = tmp_path / "PWNED"

    def edit(zout, info, data):
        if info.filename.endswith("data/constants/model_constants_config.json"):
            doc = json.loads(data)
            doc.setdefault("config", {})["c"] = {"path_name": "opaque_obj_0", "use_pickle": False,
                                                  "tensor_meta": None}
            data = json.dumps(doc).encode()
            top = info.filename.split("/", 1)[0]
            blob = pickle.dumps(_Pwn(str(marker)), protocol=2)
            zout.writestr(f"{top}/data/constants/opaque_obj_0", blob + b"\0" * (-len(blob) % 4))
        zout.writestr(info, data)

    _rezip(pt2, tmp_path / "m.pt2", edit)
    with pytest.raises(SecurityError, match="custom object"):
        load_source(str(tmp_path / "m.pt2"))
    assert not marker.exists()


def test_a_pt2_whose_payload_config_is_damaged_or_whose_signature_is_null(pt2, tmp_path):
    def damaged(zout, info, data):
        if info.filename.endswith("model_weights_config.json"):
            data = b"[" * 50_000 + b"]" * 50_000
        zout.writestr(info, data)

    def unsigned(zout, info, data):
        if info.filename.endswith("models/model.json"):
            doc = json.loads(data)
            doc["graph_module"]["module_call_graph"][0]["signature"] = None
            data = json.dumps(doc).encode()
        zout.writestr(info, data)

    for edit, words in ((damaged, "not a valid payload config"), (unsigned, "not a usable torch.export program")):
        _rezip(pt2, tmp_path / "m.pt2", edit)
        with pytest.raises(FormatError, match=words):
            load_source(str(tmp_path / "m.pt2"))


def test_an_npy_header_numpy_cannot_tokenize(tmp_path):
    h = b"{'descr': '<f4', 'fortran_order': False, 'shape': ("
    (tmp_path / "a.npy").write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h) + 1) + h + b"\n")
    with pytest.raises(FormatError, match="a.npy is not a readable .npy array"):
        load_arrays(tmp_path / "a.npy")


@pytest.mark.parametrize("text", ["dry_run: !!bool maybe\n", "opset: !!int ''\n", "out: !!timestamp nope\n",
                                  "x: !!python/object/apply:os.system ['true']\n", "a: !!binary aGk=\n"])
def test_yaml_tags_are_not_taken(tmp_path, text):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(FormatError, match="tag"):
        load_config(tmp_path / "c.yaml")


def test_a_config_key_that_is_not_text(tmp_path):
    from edgeship.errors import UsageError

    (tmp_path / "c.yaml").write_text("1: x\nopset: 18\n")
    with pytest.raises(UsageError, match="is not an option name"):
        load_config(tmp_path / "c.yaml")


def test_images_only_in_the_formats_cameras_and_the_web_write(tmp_path):
    (tmp_path / "x.blp").write_bytes(b"BLP1" + struct.pack("<IIII", 2, 0, 4, 4) + bytes(200))
    with pytest.raises(FormatError, match="not a readable image"):
        load_image(tmp_path / "x.blp")


def test_a_picture_over_the_pixel_limit_is_refused_from_its_header(tmp_path):
    import zlib

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 14000, 14000, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(b"\0" * 14001)) + chunk(b"IEND", b""))
    (tmp_path / "big.png").write_bytes(png)
    with pytest.raises(FormatError, match="pixels"):
        load_image(tmp_path / "big.png")


@pytest.mark.timeout(60)  # a guard against the quadratic string scan that was here, not a speed target
def test_json_with_many_escaped_quotes_is_refused_in_linear_time(tmp_path):
    from edgeship.readers import read_json

    (tmp_path / "q.json").write_text('"' + '\\"' * 400_000)
    with pytest.raises(FormatError, match="not valid JSON"):
        read_json(tmp_path / "q.json", "record")


def test_an_onnx_input_of_65_dimensions(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from edgeship.errors import UnsupportedError

    v = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1] * 65) for n in ("x", "y")]
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [v[0]], [v[1]])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    with pytest.raises(UnsupportedError, match="65 dimensions"):
        load_source(str(tmp_path / "m.onnx"))


def test_key_files_that_are_fifos_do_not_block(tmp_path):
    from edgeship.bundle import _public_key_of, verify_bundle

    os.mkfifo(tmp_path / "k.pem")
    with pytest.raises(InputError, match="FIFO"):
        _public_key_of(tmp_path / "k.pem")
    with pytest.raises(InputError, match="FIFO"):
        verify_bundle(tmp_path, tmp_path / "k.pem")


def test_records_with_lone_surrogates_or_overlong_file_names(tiny_onnx, tmp_path):
    import shutil

    from edgeship.artifact import read_artifact

    for field, value, error in (("model_file", "\ud800", FormatError), ("files", "x" * 1000, InputError)):
        art = tmp_path / field
        shutil.copytree(tiny_onnx, art)
        doc = json.loads((art / "artifact.json").read_text())
        if field == "files":
            doc["files"][0]["path"] = value
        else:
            doc[field] = value
        (art / "artifact.json").write_text(json.dumps(doc))  # json writes the surrogate as an escape
        with pytest.raises(error):
            read_artifact(art).verify_files()


def test_a_preprocess_size_that_is_empty(tmp_path):
    from edgeship.errors import UsageError
    from edgeship.sources import parse_preprocess

    (tmp_path / "p.json").write_text('{"size": ""}')
    with pytest.raises(UsageError, match="give H or HxW"):
        parse_preprocess(str(tmp_path / "p.json"), [])


def test_an_npz_member_without_a_name(tmp_path):
    with zipfile.ZipFile(tmp_path / "d.npz", "w") as z:
        z.writestr(zipfile.ZipInfo(""), b"abc")  # zipfile's is_dir() reads name[-1]: IndexError
    with pytest.raises(FormatError, match="without a name"):
        load_arrays(tmp_path / "d.npz")


def test_an_upload_that_is_not_an_image_is_named_without_pillows_object_repr():
    with pytest.raises(FormatError) as e:
        load_image(b"hello, not a picture")
    assert "_io.BytesIO" not in str(e.value) and "not an image in a format edgeship reads" in str(e.value)


def test_publish_a_missing_tarball_says_no_such_file(tmp_path):
    from edgeship.updates.repo import publish

    with pytest.raises(InputError, match="no such bundle tarball"):
        publish(tmp_path / "missing.tar.gz", tmp_path / "repo", channel="stable")


# ---- tar bundles: what the fuzzer's tar target found -----------------------------------------

def _chain_tar(up: int, tail: list) -> bytes:
    """CVE-2025-4517's link chain: realpath() gives up past PATH_MAX, the kernel follows every link,
    so tarfile's "data" filter (before Python 3.11.13) lets a member land outside the folder."""
    import tarfile

    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=tarfile.PAX_FORMAT) as t:
        def add(name, typ, link="", data=b""):
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname, ti.mode, ti.size = typ, link, 0o755, len(data)
            t.addfile(ti, io.BytesIO(data) if typ == tarfile.REGTYPE else None)
        d, path = "d" * 239, ""
        for s in "abcdefghijklmnop":
            add(path + d, tarfile.DIRTYPE)
            add(path + s, tarfile.SYMTYPE, d)
            path += d + "/"
        lp = "/".join("abcdefghijklmnop") + "/" + "l" * 254
        add(lp, tarfile.SYMTYPE, "/".join([".."] * 16))
        add("escape", tarfile.SYMTYPE, lp + "/.." * up)
        for name, typ, link, data in tail:
            add(name, typ, link, data)
    return bio.getvalue()


def test_a_tar_link_chain_writes_nothing_outside_and_nothing_is_followed(tmp_path):
    import tarfile

    from edgeship._archive import safe_extract

    case = tmp_path / "run" / "case"
    case.mkdir(parents=True)
    (tmp_path / "run" / "canary.txt").write_text("canary\n")
    for up, tail in ((2, [("escape/PWNED", tarfile.REGTYPE, "", b"x")]),
                     (2, [("h", tarfile.LNKTYPE, "escape/canary.txt", b""), ("h", tarfile.REGTYPE, "", b"overwritten\n")])):
        (case / "a.tar").write_bytes(_chain_tar(up, tail))
        with pytest.raises(SecurityError, match="symbolic link"):
            safe_extract(case / "a.tar", case / "dest")
        assert sorted(os.listdir(case)) == ["a.tar"] and sorted(os.listdir(tmp_path / "run")) == ["canary.txt", "case"]
        assert (tmp_path / "run" / "canary.txt").read_text() == "canary\n"


@pytest.mark.timeout(60)  # a guard against CVE-2024-6232's quadratic pax parsing (17 s here), not a speed target
@pytest.mark.parametrize("body", [b"2 " * 100_000 + b"=\n", b"1" * 100_000 + b" hdrcharset\n"])
def test_a_tar_with_a_huge_pax_header_is_refused_before_it_is_parsed(tmp_path, body):
    import tarfile

    from edgeship._archive import safe_extract

    def hdr(name, size, typ):
        b = bytearray(512)
        b[0:100] = name.ljust(100, b"\0")
        b[100:108], b[108:124] = b"0000644\0", b"0000000\0" * 2
        b[124:136], b[136:148] = tarfile.itn(size, 12, tarfile.GNU_FORMAT), b"00000000000\0"
        b[156:157], b[257:265] = typ, b"ustar\x0000"
        b[148:156] = b" " * 8
        b[148:156] = b"%06o\0 " % sum(b)
        return bytes(b)

    raw = hdr(b"././@PaxHeader", len(body), b"x") + body + bytes(-len(body) % 512) + hdr(b"a", 0, b"0") + bytes(1024)
    (tmp_path / "a.tar").write_bytes(raw)
    with pytest.raises(FormatError, match="extended header"):
        safe_extract(tmp_path / "a.tar", tmp_path / "dest")

"""The downloaded CSV opened by LibreOffice Calc (Debian's, headless): every script intact, no formula evaluated."""
import csv
import io
import shutil
import subprocess

from inbox_fixtures import add_submission, inbox_user, owner  # noqa: F401

DANGEROUS = ["=1+1", "+1+1", "-1+1", "@SUM(1,1)", '=HYPERLINK("http://evil.example","click")', "'=1+1"]
SCRIPTS = ["Иван Петров", "Արմեն Սարգսյան", "प्रिया शर्मा", "Lucia Bianchi"]


def calc_reads(csv_bytes, tmp_path):
    """Open CSV bytes in LibreOffice Calc as UTF-8 and return the cells as Calc shows them."""
    soffice = shutil.which("soffice")
    assert soffice, "install Debian's libreoffice-calc-nogui (make office)"
    source = tmp_path / "export.csv"
    source.write_bytes(csv_bytes)
    subprocess.run(
        [soffice, "--headless", "--norestore", f"-env:UserInstallation=file://{tmp_path}/lo-profile",
         "--infilter=CSV:44,34,76,1", "--convert-to", "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,true",
         "--outdir", str(tmp_path / "out"), str(source)],
        check=True, capture_output=True, timeout=180)
    shown = (tmp_path / "out" / "export.csv").read_bytes().decode("utf-8-sig")
    return list(csv.reader(io.StringIO(shown, newline="")))


def test_calc_would_evaluate_an_unescaped_cell(tmp_path):
    """The check below can fail: Calc does evaluate a formula cell that is not escaped."""
    assert calc_reads("a\n=1+1\n".encode(), tmp_path)[1] == ["2"]


def test_csv_download_opens_in_calc_with_scripts_intact_and_no_formula(app, db, owner, tmp_path):
    for name, dangerous in zip(SCRIPTS + SCRIPTS[:2], DANGEROUS):
        add_submission(db, app, name=name, subject=dangerous, message=f"{name}: {dangerous}",
                       extra={"note": dangerous})
    response = owner.get("/admin/export.csv")
    assert response.status_code == 200 and response.data.startswith(b"\xef\xbb\xbf")
    rows = calc_reads(response.data, tmp_path)
    header, cells = rows[0], rows[1:]
    assert len(cells) == len(DANGEROUS)
    visitor_columns = [header.index(name) for name in ("subject", "message", "note")]
    shown = {row[index] for row in cells for index in visitor_columns}
    assert not shown & {"2", "0", "click"}  # nothing was evaluated
    subjects = sorted(row[header.index("subject")] for row in cells)
    assert subjects == sorted("'" + value for value in DANGEROUS)  # the documented escape, shown as text
    assert sorted(row[header.index("name")] for row in cells) == sorted(SCRIPTS + SCRIPTS[:2])

"""Writers and readers for the peer MRMC programs' input formats (pure: DataFrames in, str/bytes out).

Every writer takes the analysis-ready long table (at least ``reader, modality, case, truth, rating``) and
every reader returns a DataFrame ``reader, modality, case, truth, rating`` with string ids, int truth and
float ratings, so ``read_x(write_x(df))`` gives the same ``analyse()`` result as ``df``.

- iMRMC ``.imrmc`` (FDA iMRMC, Java and R): free-text description, ``NR:``/``N0:``/``N1:``/``NM:`` lines,
  ``BEGIN DATA:``, then rows ``readerID,caseID,modalityID,score``; truth rows have readerID ``-1``,
  modalityID ``0`` and score 0/1. iMRMC itself reads string ids and treats the four size lines as optional
  (it recounts them from the data); RJafroc's ``DfReadDataFile(format = "iMRMC")`` needs all four and also
  integer reader and case ids, so RJafroc users should take the JAFROC workbook instead.
- RJafroc JAFROC workbook (``.xlsx``): sheets ``Truth`` (CaseID, LesionID, Weight, ReaderID, ModalityID,
  Paradigm), ``FP`` (ReaderID, ModalityID, CaseID, FP_Rating) and ``TP`` (ReaderID, ModalityID, CaseID,
  LesionID, TP_Rating). Readable by ``DfReadDataFile(f)`` (old format: the first three Truth columns; it needs
  integer ReaderIDs, so readers are numbered 1..J and their names kept in the workbook's id map) and by
  ``DfReadDataFile(f, newExcelFileFormat = TRUE)`` (all six; Paradigm = "ROC", "crossed").
- MRMCaov CSV: ``reader, treatment, case, truth, rating`` (the VanDyke example's names), plus ``patient``
  when the table has one, for ``mrmc(empirical_auc(truth, rating), treatment, reader, case, data)``.

Bad files raise :class:`FormatError` (a ValueError) naming the line, sheet or row at fault.

Formula injection (a reader or modality id such as ``=HYPERLINK(...)`` run by a spreadsheet), per format:
the MRMCaov CSV is opened in spreadsheets, so its text cells go through :func:`readerstudy.csvsafe.safe_cell`
(a leading ``'``; numbers unchanged). The JAFROC workbook stores every string as a text cell, never a formula
(openpyxl would make ``=...`` one), so ids reach RJafroc verbatim and Excel evaluates nothing. The iMRMC file is
a machine format read by iMRMC/RJafroc, not a spreadsheet: ids are written verbatim (a ``'`` would become part
of the id there); imported case and patient ids cannot start with a formula character anyway.
"""

from readerstudy.results.formats.common import JAFROC_MAP_PROPERTY, RATING_COLUMNS, FormatError
from readerstudy.results.formats.imrmc import read_imrmc, write_imrmc
from readerstudy.results.formats.jafroc import jafroc_case_numbers, read_jafroc, write_jafroc
from readerstudy.results.formats.mrmcaov import MRMCAOV_COLUMNS, read_mrmcaov_csv, write_mrmcaov_csv

__all__ = [
    "JAFROC_MAP_PROPERTY", "MRMCAOV_COLUMNS", "RATING_COLUMNS", "FormatError", "jafroc_case_numbers",
    "read_imrmc", "read_jafroc", "read_mrmcaov_csv", "write_imrmc", "write_jafroc", "write_mrmcaov_csv",
]  # fmt: skip

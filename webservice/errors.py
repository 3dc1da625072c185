"""Moodle's exception family as the web service renders it (protocol.md section 8).

Every error knows its exception class name, errorcode, message and (debug mode only) debuginfo;
the REST server renders any of them in JSON or XML."""

from __future__ import annotations


class MoodleException(Exception):
    """`moodle_exception`: a Moodle error with its errorcode and message."""

    exception = "moodle_exception"

    def __init__(self, errorcode: str, message: str, debuginfo: str | None = None):
        super().__init__(message)
        self.errorcode = errorcode
        self.message = message
        self.debuginfo = debuginfo


class WebserviceAccessException(MoodleException):
    exception = "webservice_access_exception"

    def __init__(self, debuginfo: str | None = None):
        super().__init__("accessexception", "Access control exception", debuginfo)


class InvalidParameterException(MoodleException):
    exception = "invalid_parameter_exception"

    def __init__(self, debuginfo: str | None = None):
        super().__init__("invalidparameter", "Invalid parameter value detected", debuginfo)


class InvalidResponseException(MoodleException):
    exception = "invalid_response_exception"

    def __init__(self, debuginfo: str | None = None):
        super().__init__("invalidresponse", "Invalid response value detected", debuginfo)


class DmlMissingRecordException(MoodleException):
    exception = "dml_missing_record_exception"

    def __init__(self, table: str, sql: str, params: list):
        listed = "".join(f"  {i} => {_php(v)},\n" for i, v in enumerate(params))
        super().__init__("invalidrecord", f"Can't find data record in database table {table}.",
                         f"{sql}\n[array (\n{listed})]")


class DmlReadException(MoodleException):
    exception = "dml_read_exception"

    def __init__(self, debuginfo: str | None = None):
        super().__init__("dmlreadexception", "Error reading from database", debuginfo)


class DmlWriteException(MoodleException):
    exception = "dml_write_exception"

    def __init__(self, debuginfo: str | None = None):
        super().__init__("dmlwriteexception", "Error writing to database", debuginfo)


class DmlConnectionException(MoodleException):
    exception = "dml_connection_exception"

    def __init__(self, debuginfo: str | None = None):
        super().__init__("dbconnectionfailed", "Error: Database connection failed", debuginfo)


UNEXPECTED = ("unexpectederror",
              "An unexpected error occurred. Please try again later or contact the site administrator.")


def unexpected(debuginfo: str | None = None) -> MoodleException:
    return MoodleException(*UNEXPECTED, debuginfo)


def _php(value) -> str:
    """var_export of a scalar, as Moodle's debuginfo shows query parameters."""
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"

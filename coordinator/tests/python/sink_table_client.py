"""Reads a Sluice sink table the way users do, with pyarrow.flight and with ADBC's Flight SQL
driver, and prints what it read as one JSON object on stdout (the Rust tests compare it).

Usage: sink_table_client.py MODE URI TABLE [TOKEN]
  MODE pyarrow  ListFlights, GetFlightInfo(path [TABLE]), DoGet on every endpoint
  MODE adbc     SELECT * FROM TABLE (and the catalog's table list) through ADBC
  MODE auth     calls without a token, with a wrong one, and with TOKEN (Basic handshake);
                prints which were refused
"""

import json
import sys

import pyarrow.flight as flight


def rows(table):
    """The rows of a pyarrow Table as sorted lists of strings (comparable across readers)."""
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    out = [[None if v is None else str(v) for v in row] for row in zip(*columns)]
    out.sort(key=lambda r: [("" if v is None else v) for v in r])
    return out


def options(token):
    if not token:
        return flight.FlightCallOptions()
    return flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])


def read_pyarrow(uri, name, token):
    client = flight.FlightClient(uri)
    call = options(token)
    listed = sorted(info.descriptor.path[0].decode() for info in client.list_flights(options=call))
    info = client.get_flight_info(flight.FlightDescriptor.for_path(name), call)
    tables = []
    for endpoint in info.endpoints:
        reader_client = client
        if endpoint.locations:
            reader_client = flight.FlightClient(endpoint.locations[0])
        tables.append(reader_client.do_get(endpoint.ticket, call).read_all())
    import pyarrow as pa

    table = pa.concat_tables(tables) if tables else info.schema.empty_table()
    return {
        "listed": listed,
        "schema": [f.name for f in info.schema],
        "endpoints": len(info.endpoints),
        "total_records": info.total_records,
        "rows": rows(table),
    }


def read_adbc(uri, name, token):
    import adbc_driver_flightsql.dbapi as flightsql

    kwargs = {}
    if token:
        kwargs["adbc.flight.sql.authorization_header"] = f"Bearer {token}"
    with flightsql.connect(uri, db_kwargs=kwargs) as conn:
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        names = sorted(
            t["table_name"]
            for catalog in objects
            for schema in (catalog["catalog_db_schemas"] or [])
            for t in (schema["db_schema_tables"] or [])
        )
        with conn.cursor() as cursor:
            cursor.execute(f"SELECT * FROM {name}")
            table = cursor.fetch_arrow_table()
    return {"listed": names, "schema": table.schema.names, "rows": rows(table)}


def check_auth(uri, name, token):
    def refused(call):
        try:
            call()
            return False
        except (flight.FlightUnauthenticatedError, flight.FlightUnauthorizedError):
            return True

    client = flight.FlightClient(uri)
    descriptor = flight.FlightDescriptor.for_path(name)
    result = {
        "missing": refused(lambda: client.get_flight_info(descriptor)),
        "wrong": refused(lambda: client.get_flight_info(descriptor, options("wrong-" + token))),
        "list_missing": refused(lambda: list(client.list_flights())),
    }
    header = client.authenticate_basic_token("reader", token)
    call = flight.FlightCallOptions(headers=[header])
    info = client.get_flight_info(descriptor, call)
    total = 0
    for endpoint in info.endpoints:
        reader = flight.FlightClient(endpoint.locations[0]) if endpoint.locations else client
        total += len(rows(reader.do_get(endpoint.ticket, call).read_all()))
        if endpoint.locations:
            result["partition_missing"] = refused(
                lambda: reader.do_get(endpoint.ticket).read_all()
            )
    result["handshake_rows"] = total
    result["bearer"] = not refused(lambda: client.get_flight_info(descriptor, options(token)))
    return result


def main():
    mode, uri, name = sys.argv[1:4]
    token = sys.argv[4] if len(sys.argv) > 4 else ""
    read = {"pyarrow": read_pyarrow, "adbc": read_adbc, "auth": check_auth}[mode]
    print(json.dumps(read(uri, name, token)))


if __name__ == "__main__":
    main()

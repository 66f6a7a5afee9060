"""`sliceops report`: the target's telemetry as charts and one HTML page.

query.py reads the window (psql on the target), charts.py draws the PNGs, page.py writes
the HTML, build.py puts them together and command.py is the command line.
"""

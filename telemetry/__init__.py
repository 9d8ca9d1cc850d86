"""Tracing (AWS X-Ray today) behind one small module, and the local trace collector.

Every tracing call of the project goes through `telemetry.tracing`: replacing the X-Ray SDK (in
maintenance mode, end of support 2027-02-25) by an OpenTelemetry exporter means changing that module
only.
"""

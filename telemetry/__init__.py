"""Logging and tracing (AWS X-Ray today) behind small modules, their settings, and the local trace collector.

Every tracing call of the project goes through `telemetry.tracing`: replacing the X-Ray SDK (in
maintenance mode, end of support 2027-02-25) by an OpenTelemetry exporter means changing that module
only. Their variables are read by `telemetry.settings` alone (docs/design.md "Code layout").
"""

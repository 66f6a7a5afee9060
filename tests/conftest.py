"""Shared pytest configuration: fixtures are split by concern and loaded as plugins."""

pytest_plugins = ["tests.fix_db", "tests.fix_docker", "tests.fix_deploy"]

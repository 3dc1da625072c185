"""Moodle core web-service functions the service implements."""

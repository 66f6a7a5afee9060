"""sliceops' backup agent: runs ON the target, as root, with the distribution's python3 only.

The deploy ships this folder to the target (like the monitor's code) and configures it with
`/etc/sliceops/<instance>/backup.json`; cron or a systemd timer runs it nightly, and the
`sliceops backup / backups / restore` commands run it locally or over SSH.
"""

"""Operations: configuration, logging, systemd notify, privacy, waits and retries."""

-- One migrator at a time across instances; released at commit.
EXEC sp_getapplock @Resource = N'sluice-migrations', @LockMode = N'Exclusive', @LockOwner = N'Transaction'

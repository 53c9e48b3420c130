-- =============================================================================
-- Hartonomous: FILESTREAM storage for content-addressed blobs on SQL Server.
--
-- Hand-written (not generated). Safe to run any number of times: every step
-- checks first (IF NOT EXISTS) and does nothing when already done.
--
-- Run AFTER `python manage.py migrate`, with sqlcmd (it uses sqlcmd variables):
--
--   sqlcmd -S host,1433 -U sa -P '...' -C -b -I -i sql/filestream.sql \
--          -v DatabaseName="hartonomous" FilestreamPath="D:\SQLData\hartonomous_fs"
--
--   DatabaseName    the platform's database (the NAME in DATABASE_URL).
--   FilestreamPath  directory for the FILESTREAM container, as the SQL Server
--                   service sees it. Its parent must exist; the last folder
--                   must NOT exist (SQL Server creates it).
--
-- Requirements:
--   * SQL Server on Windows (2022 is the target). FILESTREAM is not available
--     on SQL Server on Linux / in the Linux containers, nor on Azure SQL
--     Database; there the platform keeps blobs in Django's storage backend.
--   * FILESTREAM enabled for the instance in SQL Server Configuration Manager
--     (service properties > FILESTREAM), then a service restart. Step 0 sets
--     the T-SQL access level itself but cannot do that part.
--   * ALTER SETTINGS (for sp_configure) and ALTER on the database.
--
-- Objects (all constraint names are explicit, so nothing is server-named):
--   filegroup  [hartonomous_filestream]   CONTAINS FILESTREAM, default FS group
--   file       [hartonomous_filestream_data] -> $(FilestreamPath)
--   table      [dbo].[hartonomous_blob]   one row per distinct content (sha256)
-- =============================================================================

:on error exit

SET NOCOUNT ON;
SET ANSI_NULLS ON;
SET ANSI_PADDING ON;
SET ANSI_WARNINGS ON;
SET ARITHABORT ON;
SET CONCAT_NULL_YIELDS_NULL ON;
SET NUMERIC_ROUNDABORT OFF;
SET QUOTED_IDENTIFIER ON;
GO

-- -----------------------------------------------------------------------------
-- 0. Instance: FILESTREAM must be enabled for the service (Configuration
--    Manager); then allow T-SQL access (level 2 = T-SQL and Win32 streaming).
-- -----------------------------------------------------------------------------
IF EXISTS (SELECT 1 FROM sys.configurations
           WHERE name = N'filestream access level' AND CONVERT(int, value_in_use) < 2)
BEGIN
    -- RECONFIGURE fails with a clear error when the service-level switch in
    -- Configuration Manager is off.
    PRINT N'Setting sp_configure ''filestream access level'' to 2.';
    EXEC sys.sp_configure N'filestream access level', 2;
    RECONFIGURE;
END;
GO

IF CONVERT(int, SERVERPROPERTY('FilestreamEffectiveLevel')) = 0
    THROW 50001, N'FILESTREAM is disabled for this SQL Server instance: enable it in SQL Server Configuration Manager (service properties > FILESTREAM), restart the service and run this script again.', 1;
GO

-- -----------------------------------------------------------------------------
-- 1. Database: a FILESTREAM filegroup.
--    ALTER DATABASE cannot run inside a transaction; each step is its own batch.
-- -----------------------------------------------------------------------------
IF DB_ID(N'$(DatabaseName)') IS NULL
    THROW 50002, N'Database $(DatabaseName) does not exist: create it and run `manage.py migrate` first.', 1;
GO

IF NOT EXISTS (SELECT 1 FROM [$(DatabaseName)].sys.filegroups
               WHERE name = N'hartonomous_filestream')
BEGIN
    PRINT N'Adding FILESTREAM filegroup [hartonomous_filestream] to [$(DatabaseName)].';
    ALTER DATABASE [$(DatabaseName)]
        ADD FILEGROUP [hartonomous_filestream] CONTAINS FILESTREAM;
END;
GO

-- -----------------------------------------------------------------------------
-- 2. Database: the FILESTREAM container (a directory) in that filegroup.
-- -----------------------------------------------------------------------------
IF NOT EXISTS (SELECT 1 FROM [$(DatabaseName)].sys.database_files
               WHERE name = N'hartonomous_filestream_data')
BEGIN
    PRINT N'Adding FILESTREAM container $(FilestreamPath).';
    ALTER DATABASE [$(DatabaseName)]
        ADD FILE (NAME = N'hartonomous_filestream_data', FILENAME = N'$(FilestreamPath)')
        TO FILEGROUP [hartonomous_filestream];
END;
GO

-- Make it the default FILESTREAM filegroup, so later FILESTREAM columns
-- (created without FILESTREAM_ON) land in it too.
IF NOT EXISTS (SELECT 1 FROM [$(DatabaseName)].sys.filegroups
               WHERE name = N'hartonomous_filestream' AND is_default = 1)
BEGIN
    ALTER DATABASE [$(DatabaseName)] MODIFY FILEGROUP [hartonomous_filestream] DEFAULT;
END;
GO

-- -----------------------------------------------------------------------------
-- 3. Tables. Content-addressed: the key is the lowercase hex SHA-256 of the
--    bytes, so identical content is stored once. FILESTREAM requires a
--    UNIQUEIDENTIFIER ROWGUIDCOL column with a UNIQUE constraint.
--
--    Django maps onto it with an unmanaged model (migrations cannot create
--    FILESTREAM columns):
--        class Blob(models.Model):
--            sha256 = models.CharField(max_length=64, primary_key=True)
--            content = models.BinaryField(null=True)
--            size_bytes = models.BigIntegerField()
--            created_at = models.DateTimeField()
--            class Meta:
--                managed = False
--                db_table = "hartonomous_blob"
--    Inserts may omit row_guid and created_at (both have defaults). Reads and
--    writes of [content] through pyodbc are plain varbinary(max); Windows
--    clients can also stream with content.PathName() and
--    GET_FILESTREAM_TRANSACTION_CONTEXT().
--
--    Another blob table follows the same pattern: CHAR(64) key with a binary
--    collation, ROWGUIDCOL + UNIQUE, VARBINARY(MAX) FILESTREAM, FILESTREAM_ON.
-- -----------------------------------------------------------------------------
USE [$(DatabaseName)];
GO

IF OBJECT_ID(N'[dbo].[hartonomous_blob]', N'U') IS NULL
BEGIN
    PRINT N'Creating [dbo].[hartonomous_blob].';
    CREATE TABLE [dbo].[hartonomous_blob] (
        -- Binary collation: exact, case-sensitive comparison, so the CHECK
        -- below really rejects upper-case hex.
        [sha256]     char(64) COLLATE Latin1_General_100_BIN2 NOT NULL,
        [row_guid]   uniqueidentifier ROWGUIDCOL NOT NULL
                     CONSTRAINT [DF_hartonomous_blob_row_guid] DEFAULT NEWSEQUENTIALID(),
        [content]    varbinary(max) FILESTREAM NULL,
        [size_bytes] bigint NOT NULL,
        [created_at] datetimeoffset(7) NOT NULL
                     CONSTRAINT [DF_hartonomous_blob_created_at] DEFAULT SYSDATETIMEOFFSET(),
        CONSTRAINT [PK_hartonomous_blob] PRIMARY KEY CLUSTERED ([sha256]),
        CONSTRAINT [UQ_hartonomous_blob_row_guid] UNIQUE NONCLUSTERED ([row_guid]),
        CONSTRAINT [CK_hartonomous_blob_sha256_hex]
            CHECK ([sha256] NOT LIKE '%[^0-9a-f]%'),
        CONSTRAINT [CK_hartonomous_blob_size_bytes] CHECK ([size_bytes] >= 0)
    )
    FILESTREAM_ON [hartonomous_filestream];
END;
GO

-- Guard against a table created by hand without FILESTREAM storage.
IF NOT EXISTS (SELECT 1 FROM sys.columns
               WHERE object_id = OBJECT_ID(N'[dbo].[hartonomous_blob]')
                 AND name = N'content' AND is_filestream = 1)
    THROW 50003, N'[dbo].[hartonomous_blob].[content] exists but is not a FILESTREAM column; drop or migrate the table and run this script again.', 1;
GO

PRINT N'FILESTREAM storage for $(DatabaseName) is ready.';
GO

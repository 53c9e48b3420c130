-- =============================================================================
-- GENERATED FILE - DO NOT EDIT. Regenerate: python manage.py sqlserver_ddl
--
-- The SQL Server 2022 schema an empty database gets from `manage.py migrate`:
-- every table of the current models, then their indexes and foreign keys.
-- Rendered offline by mssql-django 2.0.0 (Django 5.2.19).
-- For review and diffs; provision databases with `manage.py migrate`, which
-- also records the migrations and runs the data migrations.
-- Run with:  sqlcmd -b -I -d <database> -i sql/schema.sql
-- =============================================================================
SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
SET XACT_ABORT ON;
GO
BEGIN TRANSACTION;
GO
CREATE TABLE [analysis_capture] ([id] bigint NOT NULL PRIMARY KEY IDENTITY (1, 1), [split] nvarchar(8) NOT NULL, [hookpoints] nvarchar(max) NOT NULL CONSTRAINT analysis_capture_hookpoints_db18b514_check CHECK ((ISJSON ("hookpoints") = 1)), [layers] nvarchar(max) NOT NULL CONSTRAINT analysis_capture_layers_52baa083_check CHECK ((ISJSON ("layers") = 1)), [token_budget] int NOT NULL CONSTRAINT analysis_capture_token_budget_bafab339_check CHECK ([token_budget] >= 0), [seq_len] int NOT NULL CONSTRAINT analysis_capture_seq_len_4f1d7cc1_check CHECK ([seq_len] >= 0), [batch_size] int NOT NULL CONSTRAINT analysis_capture_batch_size_b6fdf19d_check CHECK ([batch_size] >= 0), [tokens_per_shard] int NOT NULL CONSTRAINT analysis_capture_tokens_per_shard_ea635392_check CHECK ([tokens_per_shard] >= 0), [dtype] nvarchar(10) NOT NULL, [d_model] int NOT NULL CONSTRAINT analysis_capture_d_model_b090427f_check CHECK ([d_model] >= 0), [estimated_bytes] bigint NOT NULL, [status] nvarchar(10) NOT NULL, [error] nvarchar(max) NOT NULL, [n_tokens] bigint NOT NULL, [n_shards] int NOT NULL CONSTRAINT analysis_capture_n_shards_625cabcd_check CHECK ([n_shards] >= 0), [bytes] bigint NOT NULL, [tokens_per_second] double precision NOT NULL, [device] nvarchar(40) NOT NULL, [created_at] datetimeoffset NOT NULL, [finished_at] datetimeoffset NULL, [created_by_id] int NULL, [dataset_id] bigint NOT NULL, [job_id] bigint NULL, [organization_id] bigint NOT NULL, [project_id] bigint NOT NULL, [teacher_id] bigint NOT NULL, [torch_model_id] bigint NULL, [shards_released_at] datetimeoffset NULL);
GO
CREATE TABLE [analysis_captureshard] ([id] bigint NOT NULL PRIMARY KEY IDENTITY (1, 1), [name] nvarchar(100) NOT NULL, [blob_id] nvarchar(64) NOT NULL, [capture_id] bigint NOT NULL, CONSTRAINT [uniq_capture_shard_name] UNIQUE ([capture_id], [name]));
GO
CREATE TABLE [analysis_coder] ([id] bigint NOT NULL PRIMARY KEY IDENTITY (1, 1), [layer] int NOT NULL CONSTRAINT analysis_coder_layer_073885d4_check CHECK ([layer] >= 0), [kind] nvarchar(16) NOT NULL, [d_sae] int NOT NULL CONSTRAINT analysis_coder_d_sae_640eb210_check CHECK ([d_sae] >= 0), [fvu] double precision NULL, [l0] double precision NULL, [dead_fraction] double precision NULL, [kl] double precision NULL, [ce_increase] double precision NULL, [config_blob_id] nvarchar(64) NOT NULL, [weights_blob_id] nvarchar(64) NOT NULL, [run_id] bigint NOT NULL, CONSTRAINT [uniq_coder_layer_kind] UNIQUE ([run_id], [layer], [kind]));
GO
CREATE TABLE [analysis_coderexport] ([id] bigint NOT NULL PRIMARY KEY IDENTITY (1, 1), [format] nvarchar(16) NOT NULL, [kind] nvarchar(16) NOT NULL, [status] nvarchar(10) NOT NULL, [error] nvarchar(max) NOT NULL, [created_at] datetimeoffset NOT NULL, [finished_at] datetimeoffset NULL, [blob_id] nvarchar(64) NULL, [created_by_id] int NULL, [job_id] bigint NULL, [organization_id] bigint NOT NULL, [run_id] bigint NOT NULL);
GO
CREATE TABLE [analysis_coderrun] ([id] bigint NOT NULL PRIMARY KEY IDENTITY (1, 1), [layers] nvarchar(max) NOT NULL CONSTRAINT analysis_coderrun_layers_bbf83b90_check CHECK ((ISJSON ("layers") = 1)), [kinds] nvarchar(max) NOT NULL CONSTRAINT analysis_coderrun_kinds_be24e797_check CHECK ((ISJSON ("kinds") = 1)), [expansion] int NOT NULL CONSTRAINT analysis_coderrun_expansion_bfd5663d_check CHECK ([expansion] >= 0), [k] int NOT NULL CONSTRAINT analysis_coderrun_k_486aeaea_check CHECK ([k] >= 0), [lr] double precision NULL, [batch_size] int NOT NULL CONSTRAINT analysis_coderrun_batch_size_44c7db1b_check CHECK ([batch_size] >= 0), [token_budget] int NULL CONSTRAINT analysis_coderrun_token_budget_7519e05a_check CHECK ([token_budget] >= 0), [held_out_tokens] int NOT NULL CONSTRAINT analysis_coderrun_held_out_tokens_52ba8265_check CHECK ([held_out_tokens] >= 0), [status] nvarchar(10) NOT NULL, [error] nvarchar(max) NOT NULL, [curves] nvarchar(max) NOT NULL CONSTRAINT analysis_coderrun_curves_61d48af5_check CHECK ((ISJSON ("curves") = 1)), [tokens_trained] bigint NOT NULL, [tokens_per_second] double precision NOT NULL, [clean_ce] double precision NULL, [created_at] datetimeoffset NOT NULL, [finished_at] datetimeoffset NULL, [capture_id] bigint NOT NULL, [created_by_id] int NULL, [job_id] bigint NULL, [organization_id] bigint NOT NULL, [optimizer] nvarchar(10) NOT NULL, [source] nvarchar(10) NOT NULL);
GO
CREATE TABLE [analysis_feature] ([id] bigint NOT NULL PRIMARY KEY IDENTITY (1, 1), [index] int NOT NULL CONSTRAINT analysis_feature_index_cc5af589_check CHECK ([index] >= 0), [frequency] double precision NOT NULL, [mean_activation] double precision NOT NULL, [max_activation] double precision NOT NULL, [histogram] nvarchar(max) NOT NULL CONSTRAINT analysis_feature_histogram_d184a704_check CHECK ((ISJSON ("histogram") = 1)), [contexts] nvarchar(max) NOT NULL CONSTRAINT analysis_feature_contexts_d8c04624_check CHECK ((ISJSON ("contexts") = 1)), [logit_lens] nvarchar(max) NOT NULL CONSTRAINT analysis_feature_logit_lens_47d769c2_check CHECK ((ISJSON ("logit_lens") = 1)), [label] nvarchar(300) NOT NULL, [label_method] nvarchar(100) NOT NULL, [label_score] double precision NULL, [coder_id] bigint NOT NULL, CONSTRAINT [uniq_feature_index] UNIQUE ([coder_id], [index]));
GO
CREATE TABLE [analysis_featureneuronlink] ([id] bigint NOT NULL PRIMARY KEY IDENTITY (1, 1), [layer] int NOT NULL CONSTRAINT analysis_featureneuronlink_layer_235df79a_check CHECK ([layer] >= 0), [neuron] int NOT NULL CONSTRAINT analysis_featureneuronlink_neuron_110d2dcb_check CHECK ([neuron] >= 0), [weight] double precision NOT NULL, [feature_id] bigint NOT NULL, CONSTRAINT [uniq_feature_neuron] UNIQUE ([feature_id], [neuron]));
GO
CREATE TABLE [auth_group] ([id] int NOT NULL PRIMARY KEY IDENTITY (1, 1), [name] nvarchar(150) NOT NULL UNIQUE);
GO
CREATE TABLE [auth_group_permissions] ([id] bigint NOT NULL PRIMARY KEY IDENTITY (1, 1), [group_id] int NOT NULL, [permission_id] int NOT NULL);
GO
CREATE TABLE [auth_permission] ([id] int NOT NULL PRIMARY KEY IDENTITY (1, 1), [name] nvarchar(255) NOT NULL, [content_type_id] int NOT NULL, [codename] nvarchar(100) NOT NULL);
GO
CREATE TABLE [auth_user] ([id] int NOT NULL PRIMARY KEY IDENTITY (1, 1), [password] nvarchar(128) NOT NULL, [last_login] datetimeoffset NULL, [is_superuser] bit NOT NULL, [username] nvarchar(150) NOT NULL UNIQUE, [first_name] nvarchar(150) NOT NULL, [last_name] nvarchar(150) NOT NULL, [email] nvarchar(254) NOT NULL, [is_staff] bit NOT NULL, [is_active] bit NOT NULL, [date_joined] datetimeoffset NOT NULL);
GO
CREATE TABLE [auth_user_groups] ([id] bigint NOT NULL PRIMARY KEY IDENTITY (1, 1), [user_id] int NOT NULL, [group_id] int NOT NULL);
GO
CREATE TABLE [auth_user_user_permissions] ([id] bigint NOT NULL PRIMARY KEY IDENTITY (1, 1), [user_id] int NOT NULL, [permission_id] int NOT NULL);
GO
CREATE TABLE [distillation_build] ([id] bigint NOT NULL PRIMARY KEY IDENTITY (1, 1), [document] nvarchar(max) NOT NULL CONSTRAINT distillation_build_document_7a272aaf_check CHECK ((ISJSON ("document") = 1)), [status] nvarchar(12) NOT NULL, [error] nvarchar(max) NOT NULL, [curves] nvarchar(max) NOT NULL CONSTRAINT distillation_build_curves_57011ac4_check CHECK ((ISJSON ("curves") = 1)), [steps_done] int NOT NULL CONSTRAINT distillation_build_steps_done_909ec10d_check CHECK ([steps_done] >= 0), [steps_total] int NOT NULL CONSTRAINT distillation_build_steps_total_006c559d_check CHECK ([steps_total] >= 0), [tokens_per_second] double precision NOT NULL, [timings] nvarchar(max) NOT NULL CONSTRAINT distillation_build_timings_53b9876f_check CHECK ((ISJSON ("timings") = 1)), [quantized] nvarchar(max) NOT NULL CONSTRAINT distillation_build_quantized_284ab447_check CHECK ((ISJSON ("quantized") = 1)), [report] nvarchar(max) NOT NULL CONSTRAINT distillation_build_report_62ebefcc_check CHECK ((ISJSON ("report") = 1)), [created_at] datetimeoffset NOT NULL, [finished_at] datetimeoffset NULL, [created_by_id] int NULL, [job_id] bigint NULL, [organization_id] bigint NOT NULL, [student_id] bigint NULL, [recipe_id] bigint NOT NULL);
GO
CREATE TABLE [distillation_importanceanalysis] ([id] bigint NOT NULL PRIMARY KEY IDENTITY (1, 1), [split] nvarchar(8) NOT NULL, [token_budget] int NOT NULL CONSTRAINT distillation_importanceanalysis_token_budget_989c8ca1_check CHECK ([token_budget] >= 0), [seq_len] int NOT NULL CONSTRAINT distillation_importanceanalysis_seq_len_dfb36914_check CHECK ([seq_len] >= 0), [batch_size] int NOT NULL CONSTRAINT distillation_importanceanalysis_batch_size_dc0318de_check CHECK ([batch_size] >= 0), [sample_windows] int NOT NULL CONSTRAINT distillation_importanceanalysis_sample_windows_85033673_check CHECK ([sample_windows] >= 0), [status] nvarchar(10) NOT NULL, [error] nvarchar(max) NOT NULL, [arch] nvarchar(max) NOT NULL CONSTRAINT distillation_importanceanalysis_arch_f0b0c2c5_check CHECK ((ISJSON ("arch") = 1)), [summary] nvarchar(max) NOT NULL CONSTRAINT distillation_importanceanalysis_summary_367256cd_check CHECK ((ISJSON ("summary") = 1)), [n_tokens] bigint NOT NULL, [tokens_per_second] double precision NOT NULL, [device] nvarchar(40) NOT NULL, [created_at] datetimeoffset NOT NULL, [finished_at] datetimeoffset NULL, [created_by_id] int NULL, [dataset_id] bigint NOT NULL, [job_id] bigint NULL, [organization_id] bigint NOT NULL, [project_id] bigint NOT NULL, [report_blob_id] nvarchar(64) NULL, [teacher_id] bigint NOT NULL, [torch_model_id] bigint NULL);
GO
CREATE TABLE [distillation_recipe] ([id] bigint NOT NULL PRIMARY KEY IDENTITY (1, 1), [name] nvarchar(200) NOT NULL, [strategy] nvarchar(24) NOT NULL, [version] int NOT NULL CONSTRAINT distillation_recipe_version_a44d96b4_check CHECK ([version] >= 0), [document] nvarchar(max) NOT NULL CONSTRAINT distillation_recipe_document_32f176bc_check CHECK ((ISJSON ("document") = 1)), [estimates] nvarchar(max) NOT NULL CONSTRAINT distillation_recipe_estimates_3a941109_check CHECK ((ISJSON ("estimates") = 1)), [status] nvarchar(10) NOT NULL, [approved_at] datetimeoffset NULL, [created_at] datetimeoffset NOT NULL, [updated_at] datetimeoffset NOT NULL, [analysis_id] bigint NULL, [approved_by_id] int NULL, [created_by_id] int NULL, [organization_id] bigint NOT NULL, [project_id] bigint NOT NULL, [teacher_id] bigint NOT NULL);
GO
CREATE TABLE [django_admin_log] ([id] int NOT NULL PRIMARY KEY IDENTITY (1, 1), [action_time] datetimeoffset NOT NULL, [object_id] nvarchar(max) NULL, [object_repr] nvarchar(200) NOT NULL, [action_flag] smallint NOT NULL CONSTRAINT django_admin_log_action_flag_a8637d59_check CHECK ([action_flag] >= 0), [change_message] nvarchar(max) NOT NULL, [content_type_id] int NULL, [user_id] int NOT NULL);
GO
CREATE TABLE [django_content_type] ([id] int NOT NULL PRIMARY KEY IDENTITY (1, 1), [app_label] nvarchar(100) NOT NULL, [model] nvarchar(100) NOT NULL);
GO
CREATE TABLE [django_session] ([session_key] nvarchar(40) NOT NULL PRIMARY KEY, [session_data] nvarchar(max) NOT NULL, [expire_date] datetimeoffset NOT NULL);
GO
CREATE TABLE [projects_apitoken] ([id] bigint NOT NULL PRIMARY KEY IDENTITY (1, 1), [name] nvarchar(80) NOT NULL, [prefix] nvarchar(16) NOT NULL, [token_hash] nvarchar(64) NOT NULL UNIQUE, [created_at] datetimeoffset NOT NULL, [last_used_at] datetimeoffset NULL, [expires_at] datetimeoffset NULL, [revoked_at] datetimeoffset NULL, [user_id] int NOT NULL, [organization_id] bigint NOT NULL);
GO
CREATE TABLE [projects_blob] ([sha256] nvarchar(64) NOT NULL PRIMARY KEY, [size] bigint NOT NULL, [storage_name] nvarchar(200) NOT NULL, [created_at] datetimeoffset NOT NULL);
GO
CREATE TABLE [projects_dataset] ([id] bigint NOT NULL PRIMARY KEY IDENTITY (1, 1), [name] nvarchar(200) NOT NULL, [role] nvarchar(12) NOT NULL, [format] nvarchar(8) NOT NULL, [status] nvarchar(10) NOT NULL, [source_filename] nvarchar(255) NOT NULL, [options] nvarchar(max) NOT NULL CONSTRAINT projects_dataset_options_364034d2_check CHECK ((ISJSON ("options") = 1)), [encoding] nvarchar(200) NOT NULL, [document_count] bigint NOT NULL, [character_count] bigint NOT NULL, [token_count] bigint NULL, [tokenizer] nvarchar(300) NOT NULL, [split_ratio] double precision NOT NULL, [split_seed] bigint NOT NULL, [train_count] bigint NOT NULL, [eval_count] bigint NOT NULL, [stats] nvarchar(max) NOT NULL CONSTRAINT projects_dataset_stats_36a33eda_check CHECK ((ISJSON ("stats") = 1)), [preview] nvarchar(max) NOT NULL CONSTRAINT projects_dataset_preview_cbb867c7_check CHECK ((ISJSON ("preview") = 1)), [error] nvarchar(max) NOT NULL, [created_at] datetimeoffset NOT NULL, [created_by_id] int NULL, [documents_blob_id] nvarchar(64) NULL, [job_id] bigint NULL, [organization_id] bigint NOT NULL, [project_id] bigint NOT NULL, [source_blob_id] nvarchar(64) NOT NULL, CONSTRAINT [uniq_dataset_name] UNIQUE ([project_id], [name]));
GO
CREATE TABLE [projects_invitation] ([id] bigint NOT NULL PRIMARY KEY IDENTITY (1, 1), [role] nvarchar(10) NOT NULL, [email] nvarchar(254) NOT NULL, [key_hash] nvarchar(64) NOT NULL UNIQUE, [created_at] datetimeoffset NOT NULL, [expires_at] datetimeoffset NOT NULL, [accepted_at] datetimeoffset NULL, [revoked_at] datetimeoffset NULL, [accepted_by_id] int NULL, [created_by_id] int NULL, [organization_id] bigint NOT NULL);
GO
CREATE TABLE [projects_job] ([id] bigint NOT NULL PRIMARY KEY IDENTITY (1, 1), [kind] nvarchar(80) NOT NULL, [queue] nvarchar(20) NOT NULL, [params] nvarchar(max) NOT NULL CONSTRAINT projects_job_params_6f00593c_check CHECK ((ISJSON ("params") = 1)), [status] nvarchar(10) NOT NULL, [progress] double precision NOT NULL, [message] nvarchar(300) NOT NULL, [log] nvarchar(max) NOT NULL, [error] nvarchar(max) NOT NULL, [result] nvarchar(max) NOT NULL CONSTRAINT projects_job_result_f54717e7_check CHECK ((ISJSON ("result") = 1)), [artifacts] nvarchar(max) NOT NULL CONSTRAINT projects_job_artifacts_50118496_check CHECK ((ISJSON ("artifacts") = 1)), [rq_id] char(32) NOT NULL UNIQUE, [worker] nvarchar(120) NOT NULL, [created_at] datetimeoffset NOT NULL, [started_at] datetimeoffset NULL, [finished_at] datetimeoffset NULL, [heartbeat_at] datetimeoffset NULL, [created_by_id] int NULL, [retry_of_id] bigint NULL, [organization_id] bigint NOT NULL, [project_id] bigint NULL);
GO
CREATE TABLE [projects_languagemodel] ([id] bigint NOT NULL PRIMARY KEY IDENTITY (1, 1), [name] nvarchar(200) NOT NULL, [role] nvarchar(10) NOT NULL, [format] nvarchar(12) NOT NULL, [status] nvarchar(10) NOT NULL, [error] nvarchar(max) NOT NULL, [architecture] nvarchar(60) NOT NULL, [parameter_count] bigint NOT NULL, [size_bytes] bigint NOT NULL, [file_type] nvarchar(40) NOT NULL, [metadata] nvarchar(max) NOT NULL CONSTRAINT projects_languagemodel_metadata_14b0ebea_check CHECK ((ISJSON ("metadata") = 1)), [capabilities] nvarchar(max) NOT NULL CONSTRAINT projects_languagemodel_capabilities_c22a4600_check CHECK ((ISJSON ("capabilities") = 1)), [warnings] nvarchar(max) NOT NULL CONSTRAINT projects_languagemodel_warnings_77b2b79d_check CHECK ((ISJSON ("warnings") = 1)), [created_at] datetimeoffset NOT NULL, [created_by_id] int NULL, [derived_from_id] bigint NULL, [organization_id] bigint NOT NULL, [project_id] bigint NOT NULL);
GO
CREATE TABLE [projects_membership] ([id] bigint NOT NULL PRIMARY KEY IDENTITY (1, 1), [role] nvarchar(10) NOT NULL, [created_at] datetimeoffset NOT NULL, [user_id] int NOT NULL, [organization_id] bigint NOT NULL, CONSTRAINT [uniq_membership] UNIQUE ([organization_id], [user_id]));
GO
CREATE TABLE [projects_modelfile] ([id] bigint NOT NULL PRIMARY KEY IDENTITY (1, 1), [path] nvarchar(500) NOT NULL, [blob_id] nvarchar(64) NOT NULL, [model_id] bigint NOT NULL, CONSTRAINT [uniq_model_file_path] UNIQUE ([model_id], [path]));
GO
CREATE TABLE [projects_organization] ([id] bigint NOT NULL PRIMARY KEY IDENTITY (1, 1), [name] nvarchar(120) NOT NULL, [slug] nvarchar(60) NOT NULL UNIQUE, [created_at] datetimeoffset NOT NULL, [created_by_id] int NULL);
GO
CREATE TABLE [projects_project] ([id] bigint NOT NULL PRIMARY KEY IDENTITY (1, 1), [name] nvarchar(120) NOT NULL, [slug] nvarchar(60) NOT NULL, [description] nvarchar(max) NOT NULL, [created_at] datetimeoffset NOT NULL, [archived_at] datetimeoffset NULL, [stats] nvarchar(max) NOT NULL CONSTRAINT projects_project_stats_1999fd52_check CHECK ((ISJSON ("stats") = 1)), [stats_updated_at] datetimeoffset NULL, [created_by_id] int NULL, [organization_id] bigint NOT NULL, CONSTRAINT [uniq_project_slug] UNIQUE ([organization_id], [slug]));
GO
CREATE TABLE [projects_tensorrecord] ([id] bigint NOT NULL PRIMARY KEY IDENTITY (1, 1), [name] nvarchar(200) NOT NULL, [layer] int NULL, [component] nvarchar(20) NOT NULL, [shape] nvarchar(max) NOT NULL CONSTRAINT projects_tensorrecord_shape_de83a4a5_check CHECK ((ISJSON ("shape") = 1)), [dtype] nvarchar(20) NOT NULL, [n_params] bigint NOT NULL, [offset] bigint NOT NULL, [n_bytes] bigint NOT NULL, [sha256] nvarchar(64) NOT NULL, [file_id] bigint NOT NULL, [model_id] bigint NOT NULL);
GO
CREATE TABLE [projects_upload] ([id] char(32) NOT NULL PRIMARY KEY, [filename] nvarchar(255) NOT NULL, [relative_path] nvarchar(500) NOT NULL, [size] bigint NOT NULL, [received] bigint NOT NULL, [expected_sha256] nvarchar(64) NOT NULL, [status] nvarchar(10) NOT NULL, [created_at] datetimeoffset NOT NULL, [updated_at] datetimeoffset NOT NULL, [blob_id] nvarchar(64) NULL, [created_by_id] int NULL, [organization_id] bigint NOT NULL, [project_id] bigint NOT NULL);
GO
CREATE TABLE [runtime_agent] ([id] bigint NOT NULL PRIMARY KEY IDENTITY (1, 1), [name] nvarchar(120) NOT NULL, [slug] nvarchar(120) NOT NULL, [backend] nvarchar(12) NOT NULL, [remote_url] nvarchar(200) NOT NULL, [remote_model] nvarchar(200) NOT NULL, [remote_api_key] nvarchar(500) NOT NULL, [system_prompt] nvarchar(max) NOT NULL, [temperature] double precision NOT NULL, [top_p] double precision NOT NULL, [max_tokens] int NOT NULL CONSTRAINT runtime_agent_max_tokens_8a188b8e_check CHECK ([max_tokens] >= 0), [context_length] int NOT NULL CONSTRAINT runtime_agent_context_length_7af31662_check CHECK ([context_length] >= 0), [gpu_layers] int NULL, [use_mmap] bit NOT NULL, [threads] smallint NULL CONSTRAINT runtime_agent_threads_bf6d9478_check CHECK ([threads] >= 0), [status] nvarchar(12) NOT NULL, [error] nvarchar(max) NOT NULL, [deployment] nvarchar(max) NOT NULL CONSTRAINT runtime_agent_deployment_006ab9ea_check CHECK ((ISJSON ("deployment") = 1)), [deployed_at] datetimeoffset NULL, [created_at] datetimeoffset NOT NULL, [updated_at] datetimeoffset NOT NULL, [created_by_id] int NULL, [model_id] bigint NULL, [organization_id] bigint NOT NULL, [project_id] bigint NOT NULL, CONSTRAINT [uniq_agent_org_slug] UNIQUE ([organization_id], [slug]));
GO
CREATE TABLE [runtime_conversation] ([id] bigint NOT NULL PRIMARY KEY IDENTITY (1, 1), [variant] nvarchar(10) NOT NULL, [title] nvarchar(200) NOT NULL, [created_at] datetimeoffset NOT NULL, [updated_at] datetimeoffset NOT NULL, [agent_id] bigint NOT NULL, [organization_id] bigint NOT NULL, [user_id] int NULL, [endpoint_id] bigint NULL);
GO
CREATE TABLE [runtime_endpoint] ([id] bigint NOT NULL PRIMARY KEY IDENTITY (1, 1), [name] nvarchar(120) NOT NULL, [slug] nvarchar(120) NOT NULL, [candidate_share] double precision NOT NULL, [status] nvarchar(10) NOT NULL, [created_at] datetimeoffset NOT NULL, [baseline_id] bigint NOT NULL, [candidate_id] bigint NULL, [created_by_id] int NULL, [organization_id] bigint NOT NULL, [project_id] bigint NOT NULL, CONSTRAINT [uniq_endpoint_org_slug] UNIQUE ([organization_id], [slug]));
GO
CREATE TABLE [runtime_feedback] ([id] bigint NOT NULL PRIMARY KEY IDENTITY (1, 1), [rating] smallint NOT NULL, [comment] nvarchar(max) NOT NULL, [created_at] datetimeoffset NOT NULL, [user_id] int NULL, [message_id] bigint NOT NULL, CONSTRAINT [uniq_feedback_message_user] UNIQUE ([message_id], [user_id]));
GO
CREATE TABLE [runtime_inferencerecord] ([id] bigint NOT NULL PRIMARY KEY IDENTITY (1, 1), [variant] nvarchar(10) NOT NULL, [source] nvarchar(6) NOT NULL, [prompt_tokens] int NOT NULL CONSTRAINT runtime_inferencerecord_prompt_tokens_aa892074_check CHECK ([prompt_tokens] >= 0), [completion_tokens] int NOT NULL CONSTRAINT runtime_inferencerecord_completion_tokens_4020b052_check CHECK ([completion_tokens] >= 0), [ttft_ms] int NULL CONSTRAINT runtime_inferencerecord_ttft_ms_e126d9dc_check CHECK ([ttft_ms] >= 0), [latency_ms] int NOT NULL CONSTRAINT runtime_inferencerecord_latency_ms_4e5edf25_check CHECK ([latency_ms] >= 0), [outcome] nvarchar(12) NOT NULL, [error] nvarchar(max) NOT NULL, [created_at] datetimeoffset NOT NULL, [agent_id] bigint NULL, [conversation_id] bigint NULL, [endpoint_id] bigint NULL, [model_id] bigint NULL, [organization_id] bigint NOT NULL, [token_id] bigint NULL, [user_id] int NULL, [message_id] bigint NULL);
GO
CREATE TABLE [runtime_message] ([id] bigint NOT NULL PRIMARY KEY IDENTITY (1, 1), [role] nvarchar(10) NOT NULL, [content] nvarchar(max) NOT NULL, [status] nvarchar(12) NOT NULL, [error] nvarchar(max) NOT NULL, [superseded] bit NOT NULL, [prompt_tokens] int NOT NULL CONSTRAINT runtime_message_prompt_tokens_5c1b9e0e_check CHECK ([prompt_tokens] >= 0), [completion_tokens] int NOT NULL CONSTRAINT runtime_message_completion_tokens_fad7dba4_check CHECK ([completion_tokens] >= 0), [ttft_ms] int NULL CONSTRAINT runtime_message_ttft_ms_ae1fde9b_check CHECK ([ttft_ms] >= 0), [duration_ms] int NULL CONSTRAINT runtime_message_duration_ms_ec4f5def_check CHECK ([duration_ms] >= 0), [dropped_messages] int NOT NULL CONSTRAINT runtime_message_dropped_messages_8f00da42_check CHECK ([dropped_messages] >= 0), [created_at] datetimeoffset NOT NULL, [updated_at] datetimeoffset NOT NULL, [agent_id] bigint NULL, [conversation_id] bigint NOT NULL);
GO
CREATE TABLE [runtime_promotion] ([id] bigint NOT NULL PRIMARY KEY IDENTITY (1, 1), [action] nvarchar(10) NOT NULL, [candidate_share] double precision NOT NULL, [results] nvarchar(max) NOT NULL CONSTRAINT runtime_promotion_results_e743d438_check CHECK ((ISJSON ("results") = 1)), [note] nvarchar(500) NOT NULL, [at] datetimeoffset NOT NULL, [baseline_id] bigint NULL, [by_id] int NULL, [candidate_id] bigint NULL, [endpoint_id] bigint NOT NULL);
GO
ALTER TABLE [analysis_capture] ADD CONSTRAINT [analysis_capture_created_by_id_d7207c05_fk_auth_user_id] FOREIGN KEY ([created_by_id]) REFERENCES [auth_user] ([id]);
GO
ALTER TABLE [analysis_capture] ADD CONSTRAINT [analysis_capture_dataset_id_b1914c3f_fk_projects_dataset_id] FOREIGN KEY ([dataset_id]) REFERENCES [projects_dataset] ([id]);
GO
ALTER TABLE [analysis_capture] ADD CONSTRAINT [analysis_capture_job_id_64c3db09_fk_projects_job_id] FOREIGN KEY ([job_id]) REFERENCES [projects_job] ([id]);
GO
ALTER TABLE [analysis_capture] ADD CONSTRAINT [analysis_capture_organization_id_8eb4da27_fk_projects_organization_id] FOREIGN KEY ([organization_id]) REFERENCES [projects_organization] ([id]);
GO
ALTER TABLE [analysis_capture] ADD CONSTRAINT [analysis_capture_project_id_37e17cc9_fk_projects_project_id] FOREIGN KEY ([project_id]) REFERENCES [projects_project] ([id]);
GO
ALTER TABLE [analysis_capture] ADD CONSTRAINT [analysis_capture_teacher_id_130d287e_fk_projects_languagemodel_id] FOREIGN KEY ([teacher_id]) REFERENCES [projects_languagemodel] ([id]);
GO
ALTER TABLE [analysis_capture] ADD CONSTRAINT [analysis_capture_torch_model_id_a2c1666c_fk_projects_languagemodel_id] FOREIGN KEY ([torch_model_id]) REFERENCES [projects_languagemodel] ([id]);
GO
ALTER TABLE [analysis_captureshard] ADD CONSTRAINT [analysis_captureshard_blob_id_afcce166_fk_projects_blob_sha256] FOREIGN KEY ([blob_id]) REFERENCES [projects_blob] ([sha256]);
GO
ALTER TABLE [analysis_captureshard] ADD CONSTRAINT [analysis_captureshard_capture_id_7e20180a_fk_analysis_capture_id] FOREIGN KEY ([capture_id]) REFERENCES [analysis_capture] ([id]);
GO
ALTER TABLE [analysis_coder] ADD CONSTRAINT [analysis_coder_config_blob_id_f160069b_fk_projects_blob_sha256] FOREIGN KEY ([config_blob_id]) REFERENCES [projects_blob] ([sha256]);
GO
ALTER TABLE [analysis_coder] ADD CONSTRAINT [analysis_coder_run_id_b8a680e3_fk_analysis_coderrun_id] FOREIGN KEY ([run_id]) REFERENCES [analysis_coderrun] ([id]);
GO
ALTER TABLE [analysis_coder] ADD CONSTRAINT [analysis_coder_weights_blob_id_98369a9e_fk_projects_blob_sha256] FOREIGN KEY ([weights_blob_id]) REFERENCES [projects_blob] ([sha256]);
GO
ALTER TABLE [analysis_coderexport] ADD CONSTRAINT [analysis_coderexport_blob_id_3f4372b0_fk_projects_blob_sha256] FOREIGN KEY ([blob_id]) REFERENCES [projects_blob] ([sha256]);
GO
ALTER TABLE [analysis_coderexport] ADD CONSTRAINT [analysis_coderexport_created_by_id_14dcbb83_fk_auth_user_id] FOREIGN KEY ([created_by_id]) REFERENCES [auth_user] ([id]);
GO
ALTER TABLE [analysis_coderexport] ADD CONSTRAINT [analysis_coderexport_job_id_b0d898bb_fk_projects_job_id] FOREIGN KEY ([job_id]) REFERENCES [projects_job] ([id]);
GO
ALTER TABLE [analysis_coderexport] ADD CONSTRAINT [analysis_coderexport_organization_id_0025ea61_fk_projects_organization_id] FOREIGN KEY ([organization_id]) REFERENCES [projects_organization] ([id]);
GO
ALTER TABLE [analysis_coderexport] ADD CONSTRAINT [analysis_coderexport_run_id_eb01db32_fk_analysis_coderrun_id] FOREIGN KEY ([run_id]) REFERENCES [analysis_coderrun] ([id]);
GO
ALTER TABLE [analysis_coderrun] ADD CONSTRAINT [analysis_coderrun_capture_id_76777ada_fk_analysis_capture_id] FOREIGN KEY ([capture_id]) REFERENCES [analysis_capture] ([id]);
GO
ALTER TABLE [analysis_coderrun] ADD CONSTRAINT [analysis_coderrun_created_by_id_84a00451_fk_auth_user_id] FOREIGN KEY ([created_by_id]) REFERENCES [auth_user] ([id]);
GO
ALTER TABLE [analysis_coderrun] ADD CONSTRAINT [analysis_coderrun_job_id_6486279b_fk_projects_job_id] FOREIGN KEY ([job_id]) REFERENCES [projects_job] ([id]);
GO
ALTER TABLE [analysis_coderrun] ADD CONSTRAINT [analysis_coderrun_organization_id_0b2d5301_fk_projects_organization_id] FOREIGN KEY ([organization_id]) REFERENCES [projects_organization] ([id]);
GO
ALTER TABLE [analysis_feature] ADD CONSTRAINT [analysis_feature_coder_id_12bdba83_fk_analysis_coder_id] FOREIGN KEY ([coder_id]) REFERENCES [analysis_coder] ([id]);
GO
ALTER TABLE [analysis_featureneuronlink] ADD CONSTRAINT [analysis_featureneuronlink_feature_id_7f3ff8c1_fk_analysis_feature_id] FOREIGN KEY ([feature_id]) REFERENCES [analysis_feature] ([id]);
GO
ALTER TABLE [auth_group_permissions] ADD CONSTRAINT [auth_group_permissions_group_id_b120cbf9_fk_auth_group_id] FOREIGN KEY ([group_id]) REFERENCES [auth_group] ([id]);
GO
ALTER TABLE [auth_group_permissions] ADD CONSTRAINT [auth_group_permissions_permission_id_84c5c92e_fk_auth_permission_id] FOREIGN KEY ([permission_id]) REFERENCES [auth_permission] ([id]);
GO
ALTER TABLE [auth_permission] ADD CONSTRAINT [auth_permission_content_type_id_2f476e4b_fk_django_content_type_id] FOREIGN KEY ([content_type_id]) REFERENCES [django_content_type] ([id]);
GO
ALTER TABLE [auth_user_groups] ADD CONSTRAINT [auth_user_groups_group_id_97559544_fk_auth_group_id] FOREIGN KEY ([group_id]) REFERENCES [auth_group] ([id]);
GO
ALTER TABLE [auth_user_groups] ADD CONSTRAINT [auth_user_groups_user_id_6a12ed8b_fk_auth_user_id] FOREIGN KEY ([user_id]) REFERENCES [auth_user] ([id]);
GO
ALTER TABLE [auth_user_user_permissions] ADD CONSTRAINT [auth_user_user_permissions_permission_id_1fbb5f2c_fk_auth_permission_id] FOREIGN KEY ([permission_id]) REFERENCES [auth_permission] ([id]);
GO
ALTER TABLE [auth_user_user_permissions] ADD CONSTRAINT [auth_user_user_permissions_user_id_a95ead1b_fk_auth_user_id] FOREIGN KEY ([user_id]) REFERENCES [auth_user] ([id]);
GO
ALTER TABLE [distillation_build] ADD CONSTRAINT [distillation_build_created_by_id_70d0063a_fk_auth_user_id] FOREIGN KEY ([created_by_id]) REFERENCES [auth_user] ([id]);
GO
ALTER TABLE [distillation_build] ADD CONSTRAINT [distillation_build_job_id_b51eb5d5_fk_projects_job_id] FOREIGN KEY ([job_id]) REFERENCES [projects_job] ([id]);
GO
ALTER TABLE [distillation_build] ADD CONSTRAINT [distillation_build_organization_id_041d4779_fk_projects_organization_id] FOREIGN KEY ([organization_id]) REFERENCES [projects_organization] ([id]);
GO
ALTER TABLE [distillation_build] ADD CONSTRAINT [distillation_build_recipe_id_446d92e8_fk_distillation_recipe_id] FOREIGN KEY ([recipe_id]) REFERENCES [distillation_recipe] ([id]);
GO
ALTER TABLE [distillation_build] ADD CONSTRAINT [distillation_build_student_id_e7b12e20_fk_projects_languagemodel_id] FOREIGN KEY ([student_id]) REFERENCES [projects_languagemodel] ([id]);
GO
ALTER TABLE [distillation_importanceanalysis] ADD CONSTRAINT [distillation_importanceanalysis_created_by_id_c070e688_fk_auth_user_id] FOREIGN KEY ([created_by_id]) REFERENCES [auth_user] ([id]);
GO
ALTER TABLE [distillation_importanceanalysis] ADD CONSTRAINT [distillation_importanceanalysis_dataset_id_fa48eb32_fk_projects_dataset_id] FOREIGN KEY ([dataset_id]) REFERENCES [projects_dataset] ([id]);
GO
ALTER TABLE [distillation_importanceanalysis] ADD CONSTRAINT [distillation_importanceanalysis_job_id_f10af64a_fk_projects_job_id] FOREIGN KEY ([job_id]) REFERENCES [projects_job] ([id]);
GO
ALTER TABLE [distillation_importanceanalysis] ADD CONSTRAINT [distillation_importanceanalysis_organization_id_5f272fa4_fk_projects_organization_id] FOREIGN KEY ([organization_id]) REFERENCES [projects_organization] ([id]);
GO
ALTER TABLE [distillation_importanceanalysis] ADD CONSTRAINT [distillation_importanceanalysis_project_id_fb4cc7e2_fk_projects_project_id] FOREIGN KEY ([project_id]) REFERENCES [projects_project] ([id]);
GO
ALTER TABLE [distillation_importanceanalysis] ADD CONSTRAINT [distillation_importanceanalysis_report_blob_id_3f4f469b_fk_projects_blob_sha256] FOREIGN KEY ([report_blob_id]) REFERENCES [projects_blob] ([sha256]);
GO
ALTER TABLE [distillation_importanceanalysis] ADD CONSTRAINT [distillation_importanceanalysis_teacher_id_8ec973e3_fk_projects_languagemodel_id] FOREIGN KEY ([teacher_id]) REFERENCES [projects_languagemodel] ([id]);
GO
ALTER TABLE [distillation_importanceanalysis] ADD CONSTRAINT [distillation_importanceanalysis_torch_model_id_148b38a7_fk_projects_languagemodel_id] FOREIGN KEY ([torch_model_id]) REFERENCES [projects_languagemodel] ([id]);
GO
ALTER TABLE [distillation_recipe] ADD CONSTRAINT [distillation_recipe_analysis_id_42573984_fk_distillation_importanceanalysis_id] FOREIGN KEY ([analysis_id]) REFERENCES [distillation_importanceanalysis] ([id]);
GO
ALTER TABLE [distillation_recipe] ADD CONSTRAINT [distillation_recipe_approved_by_id_a7c89d1f_fk_auth_user_id] FOREIGN KEY ([approved_by_id]) REFERENCES [auth_user] ([id]);
GO
ALTER TABLE [distillation_recipe] ADD CONSTRAINT [distillation_recipe_created_by_id_75d29a6c_fk_auth_user_id] FOREIGN KEY ([created_by_id]) REFERENCES [auth_user] ([id]);
GO
ALTER TABLE [distillation_recipe] ADD CONSTRAINT [distillation_recipe_organization_id_2fc2178c_fk_projects_organization_id] FOREIGN KEY ([organization_id]) REFERENCES [projects_organization] ([id]);
GO
ALTER TABLE [distillation_recipe] ADD CONSTRAINT [distillation_recipe_project_id_64c83143_fk_projects_project_id] FOREIGN KEY ([project_id]) REFERENCES [projects_project] ([id]);
GO
ALTER TABLE [distillation_recipe] ADD CONSTRAINT [distillation_recipe_teacher_id_a310e47c_fk_projects_languagemodel_id] FOREIGN KEY ([teacher_id]) REFERENCES [projects_languagemodel] ([id]);
GO
ALTER TABLE [django_admin_log] ADD CONSTRAINT [django_admin_log_content_type_id_c4bce8eb_fk_django_content_type_id] FOREIGN KEY ([content_type_id]) REFERENCES [django_content_type] ([id]);
GO
ALTER TABLE [django_admin_log] ADD CONSTRAINT [django_admin_log_user_id_c564eba6_fk_auth_user_id] FOREIGN KEY ([user_id]) REFERENCES [auth_user] ([id]);
GO
ALTER TABLE [projects_apitoken] ADD CONSTRAINT [projects_apitoken_organization_id_f683d3a2_fk_projects_organization_id] FOREIGN KEY ([organization_id]) REFERENCES [projects_organization] ([id]);
GO
ALTER TABLE [projects_apitoken] ADD CONSTRAINT [projects_apitoken_user_id_a07e154c_fk_auth_user_id] FOREIGN KEY ([user_id]) REFERENCES [auth_user] ([id]);
GO
ALTER TABLE [projects_dataset] ADD CONSTRAINT [projects_dataset_created_by_id_5010053b_fk_auth_user_id] FOREIGN KEY ([created_by_id]) REFERENCES [auth_user] ([id]);
GO
ALTER TABLE [projects_dataset] ADD CONSTRAINT [projects_dataset_documents_blob_id_f67783a9_fk_projects_blob_sha256] FOREIGN KEY ([documents_blob_id]) REFERENCES [projects_blob] ([sha256]);
GO
ALTER TABLE [projects_dataset] ADD CONSTRAINT [projects_dataset_job_id_a34e5e49_fk_projects_job_id] FOREIGN KEY ([job_id]) REFERENCES [projects_job] ([id]);
GO
ALTER TABLE [projects_dataset] ADD CONSTRAINT [projects_dataset_organization_id_21be7820_fk_projects_organization_id] FOREIGN KEY ([organization_id]) REFERENCES [projects_organization] ([id]);
GO
ALTER TABLE [projects_dataset] ADD CONSTRAINT [projects_dataset_project_id_4c7b6951_fk_projects_project_id] FOREIGN KEY ([project_id]) REFERENCES [projects_project] ([id]);
GO
ALTER TABLE [projects_dataset] ADD CONSTRAINT [projects_dataset_source_blob_id_5a1c4cfd_fk_projects_blob_sha256] FOREIGN KEY ([source_blob_id]) REFERENCES [projects_blob] ([sha256]);
GO
ALTER TABLE [projects_invitation] ADD CONSTRAINT [projects_invitation_accepted_by_id_c0262014_fk_auth_user_id] FOREIGN KEY ([accepted_by_id]) REFERENCES [auth_user] ([id]);
GO
ALTER TABLE [projects_invitation] ADD CONSTRAINT [projects_invitation_created_by_id_346d4c93_fk_auth_user_id] FOREIGN KEY ([created_by_id]) REFERENCES [auth_user] ([id]);
GO
ALTER TABLE [projects_invitation] ADD CONSTRAINT [projects_invitation_organization_id_93192c13_fk_projects_organization_id] FOREIGN KEY ([organization_id]) REFERENCES [projects_organization] ([id]);
GO
ALTER TABLE [projects_job] ADD CONSTRAINT [projects_job_created_by_id_8f2f4cda_fk_auth_user_id] FOREIGN KEY ([created_by_id]) REFERENCES [auth_user] ([id]);
GO
ALTER TABLE [projects_job] ADD CONSTRAINT [projects_job_organization_id_56ebb956_fk_projects_organization_id] FOREIGN KEY ([organization_id]) REFERENCES [projects_organization] ([id]);
GO
ALTER TABLE [projects_job] ADD CONSTRAINT [projects_job_project_id_f3780fa1_fk_projects_project_id] FOREIGN KEY ([project_id]) REFERENCES [projects_project] ([id]);
GO
ALTER TABLE [projects_job] ADD CONSTRAINT [projects_job_retry_of_id_02bc8acc_fk_projects_job_id] FOREIGN KEY ([retry_of_id]) REFERENCES [projects_job] ([id]);
GO
ALTER TABLE [projects_languagemodel] ADD CONSTRAINT [projects_languagemodel_created_by_id_746c6f1e_fk_auth_user_id] FOREIGN KEY ([created_by_id]) REFERENCES [auth_user] ([id]);
GO
ALTER TABLE [projects_languagemodel] ADD CONSTRAINT [projects_languagemodel_derived_from_id_b9498b2e_fk_projects_languagemodel_id] FOREIGN KEY ([derived_from_id]) REFERENCES [projects_languagemodel] ([id]);
GO
ALTER TABLE [projects_languagemodel] ADD CONSTRAINT [projects_languagemodel_organization_id_c31f44d0_fk_projects_organization_id] FOREIGN KEY ([organization_id]) REFERENCES [projects_organization] ([id]);
GO
ALTER TABLE [projects_languagemodel] ADD CONSTRAINT [projects_languagemodel_project_id_32266579_fk_projects_project_id] FOREIGN KEY ([project_id]) REFERENCES [projects_project] ([id]);
GO
ALTER TABLE [projects_membership] ADD CONSTRAINT [projects_membership_organization_id_11097183_fk_projects_organization_id] FOREIGN KEY ([organization_id]) REFERENCES [projects_organization] ([id]);
GO
ALTER TABLE [projects_membership] ADD CONSTRAINT [projects_membership_user_id_13374535_fk_auth_user_id] FOREIGN KEY ([user_id]) REFERENCES [auth_user] ([id]);
GO
ALTER TABLE [projects_modelfile] ADD CONSTRAINT [projects_modelfile_blob_id_6b9f2cfd_fk_projects_blob_sha256] FOREIGN KEY ([blob_id]) REFERENCES [projects_blob] ([sha256]);
GO
ALTER TABLE [projects_modelfile] ADD CONSTRAINT [projects_modelfile_model_id_950adf3c_fk_projects_languagemodel_id] FOREIGN KEY ([model_id]) REFERENCES [projects_languagemodel] ([id]);
GO
ALTER TABLE [projects_organization] ADD CONSTRAINT [projects_organization_created_by_id_cc1264ce_fk_auth_user_id] FOREIGN KEY ([created_by_id]) REFERENCES [auth_user] ([id]);
GO
ALTER TABLE [projects_project] ADD CONSTRAINT [projects_project_created_by_id_c49d7b6d_fk_auth_user_id] FOREIGN KEY ([created_by_id]) REFERENCES [auth_user] ([id]);
GO
ALTER TABLE [projects_project] ADD CONSTRAINT [projects_project_organization_id_c93e5ca2_fk_projects_organization_id] FOREIGN KEY ([organization_id]) REFERENCES [projects_organization] ([id]);
GO
ALTER TABLE [projects_tensorrecord] ADD CONSTRAINT [projects_tensorrecord_file_id_101088e4_fk_projects_modelfile_id] FOREIGN KEY ([file_id]) REFERENCES [projects_modelfile] ([id]);
GO
ALTER TABLE [projects_tensorrecord] ADD CONSTRAINT [projects_tensorrecord_model_id_6a089ba4_fk_projects_languagemodel_id] FOREIGN KEY ([model_id]) REFERENCES [projects_languagemodel] ([id]);
GO
ALTER TABLE [projects_upload] ADD CONSTRAINT [projects_upload_blob_id_34901acf_fk_projects_blob_sha256] FOREIGN KEY ([blob_id]) REFERENCES [projects_blob] ([sha256]);
GO
ALTER TABLE [projects_upload] ADD CONSTRAINT [projects_upload_created_by_id_075618ad_fk_auth_user_id] FOREIGN KEY ([created_by_id]) REFERENCES [auth_user] ([id]);
GO
ALTER TABLE [projects_upload] ADD CONSTRAINT [projects_upload_organization_id_ed3e57a8_fk_projects_organization_id] FOREIGN KEY ([organization_id]) REFERENCES [projects_organization] ([id]);
GO
ALTER TABLE [projects_upload] ADD CONSTRAINT [projects_upload_project_id_43ff4ce6_fk_projects_project_id] FOREIGN KEY ([project_id]) REFERENCES [projects_project] ([id]);
GO
ALTER TABLE [runtime_agent] ADD CONSTRAINT [runtime_agent_created_by_id_aa811a8f_fk_auth_user_id] FOREIGN KEY ([created_by_id]) REFERENCES [auth_user] ([id]);
GO
ALTER TABLE [runtime_agent] ADD CONSTRAINT [runtime_agent_model_id_e9013720_fk_projects_languagemodel_id] FOREIGN KEY ([model_id]) REFERENCES [projects_languagemodel] ([id]);
GO
ALTER TABLE [runtime_agent] ADD CONSTRAINT [runtime_agent_organization_id_34457941_fk_projects_organization_id] FOREIGN KEY ([organization_id]) REFERENCES [projects_organization] ([id]);
GO
ALTER TABLE [runtime_agent] ADD CONSTRAINT [runtime_agent_project_id_f0b2d4e1_fk_projects_project_id] FOREIGN KEY ([project_id]) REFERENCES [projects_project] ([id]);
GO
ALTER TABLE [runtime_conversation] ADD CONSTRAINT [runtime_conversation_agent_id_0b04f1ae_fk_runtime_agent_id] FOREIGN KEY ([agent_id]) REFERENCES [runtime_agent] ([id]);
GO
ALTER TABLE [runtime_conversation] ADD CONSTRAINT [runtime_conversation_endpoint_id_ee133d6f_fk_runtime_endpoint_id] FOREIGN KEY ([endpoint_id]) REFERENCES [runtime_endpoint] ([id]);
GO
ALTER TABLE [runtime_conversation] ADD CONSTRAINT [runtime_conversation_organization_id_acd592d4_fk_projects_organization_id] FOREIGN KEY ([organization_id]) REFERENCES [projects_organization] ([id]);
GO
ALTER TABLE [runtime_conversation] ADD CONSTRAINT [runtime_conversation_user_id_f8e625cc_fk_auth_user_id] FOREIGN KEY ([user_id]) REFERENCES [auth_user] ([id]);
GO
ALTER TABLE [runtime_endpoint] ADD CONSTRAINT [runtime_endpoint_baseline_id_ab4e662d_fk_runtime_agent_id] FOREIGN KEY ([baseline_id]) REFERENCES [runtime_agent] ([id]);
GO
ALTER TABLE [runtime_endpoint] ADD CONSTRAINT [runtime_endpoint_candidate_id_6033b265_fk_runtime_agent_id] FOREIGN KEY ([candidate_id]) REFERENCES [runtime_agent] ([id]);
GO
ALTER TABLE [runtime_endpoint] ADD CONSTRAINT [runtime_endpoint_created_by_id_c2d4cf00_fk_auth_user_id] FOREIGN KEY ([created_by_id]) REFERENCES [auth_user] ([id]);
GO
ALTER TABLE [runtime_endpoint] ADD CONSTRAINT [runtime_endpoint_organization_id_f5986459_fk_projects_organization_id] FOREIGN KEY ([organization_id]) REFERENCES [projects_organization] ([id]);
GO
ALTER TABLE [runtime_endpoint] ADD CONSTRAINT [runtime_endpoint_project_id_11b29c9a_fk_projects_project_id] FOREIGN KEY ([project_id]) REFERENCES [projects_project] ([id]);
GO
ALTER TABLE [runtime_feedback] ADD CONSTRAINT [runtime_feedback_message_id_c2024cf0_fk_runtime_message_id] FOREIGN KEY ([message_id]) REFERENCES [runtime_message] ([id]);
GO
ALTER TABLE [runtime_feedback] ADD CONSTRAINT [runtime_feedback_user_id_b4e9dc44_fk_auth_user_id] FOREIGN KEY ([user_id]) REFERENCES [auth_user] ([id]);
GO
ALTER TABLE [runtime_inferencerecord] ADD CONSTRAINT [runtime_inferencerecord_agent_id_f4ffad73_fk_runtime_agent_id] FOREIGN KEY ([agent_id]) REFERENCES [runtime_agent] ([id]);
GO
ALTER TABLE [runtime_inferencerecord] ADD CONSTRAINT [runtime_inferencerecord_conversation_id_088ef8f0_fk_runtime_conversation_id] FOREIGN KEY ([conversation_id]) REFERENCES [runtime_conversation] ([id]);
GO
ALTER TABLE [runtime_inferencerecord] ADD CONSTRAINT [runtime_inferencerecord_endpoint_id_5fc2a727_fk_runtime_endpoint_id] FOREIGN KEY ([endpoint_id]) REFERENCES [runtime_endpoint] ([id]);
GO
ALTER TABLE [runtime_inferencerecord] ADD CONSTRAINT [runtime_inferencerecord_message_id_52186386_fk_runtime_message_id] FOREIGN KEY ([message_id]) REFERENCES [runtime_message] ([id]);
GO
ALTER TABLE [runtime_inferencerecord] ADD CONSTRAINT [runtime_inferencerecord_model_id_99b9d64e_fk_projects_languagemodel_id] FOREIGN KEY ([model_id]) REFERENCES [projects_languagemodel] ([id]);
GO
ALTER TABLE [runtime_inferencerecord] ADD CONSTRAINT [runtime_inferencerecord_organization_id_d2bc76b4_fk_projects_organization_id] FOREIGN KEY ([organization_id]) REFERENCES [projects_organization] ([id]);
GO
ALTER TABLE [runtime_inferencerecord] ADD CONSTRAINT [runtime_inferencerecord_token_id_f35f99ce_fk_projects_apitoken_id] FOREIGN KEY ([token_id]) REFERENCES [projects_apitoken] ([id]);
GO
ALTER TABLE [runtime_inferencerecord] ADD CONSTRAINT [runtime_inferencerecord_user_id_53894195_fk_auth_user_id] FOREIGN KEY ([user_id]) REFERENCES [auth_user] ([id]);
GO
ALTER TABLE [runtime_message] ADD CONSTRAINT [runtime_message_agent_id_5913e1e3_fk_runtime_agent_id] FOREIGN KEY ([agent_id]) REFERENCES [runtime_agent] ([id]);
GO
ALTER TABLE [runtime_message] ADD CONSTRAINT [runtime_message_conversation_id_339800fd_fk_runtime_conversation_id] FOREIGN KEY ([conversation_id]) REFERENCES [runtime_conversation] ([id]);
GO
ALTER TABLE [runtime_promotion] ADD CONSTRAINT [runtime_promotion_baseline_id_d2113230_fk_runtime_agent_id] FOREIGN KEY ([baseline_id]) REFERENCES [runtime_agent] ([id]);
GO
ALTER TABLE [runtime_promotion] ADD CONSTRAINT [runtime_promotion_by_id_8ee5d95b_fk_auth_user_id] FOREIGN KEY ([by_id]) REFERENCES [auth_user] ([id]);
GO
ALTER TABLE [runtime_promotion] ADD CONSTRAINT [runtime_promotion_candidate_id_1073ff26_fk_runtime_agent_id] FOREIGN KEY ([candidate_id]) REFERENCES [runtime_agent] ([id]);
GO
ALTER TABLE [runtime_promotion] ADD CONSTRAINT [runtime_promotion_endpoint_id_5b0fa5ef_fk_runtime_endpoint_id] FOREIGN KEY ([endpoint_id]) REFERENCES [runtime_endpoint] ([id]);
GO
CREATE INDEX [analysis_capture_created_by_id_d7207c05] ON [analysis_capture] ([created_by_id]);
GO
CREATE INDEX [analysis_capture_dataset_id_b1914c3f] ON [analysis_capture] ([dataset_id]);
GO
CREATE INDEX [analysis_capture_job_id_64c3db09] ON [analysis_capture] ([job_id]);
GO
CREATE INDEX [analysis_capture_organization_id_8eb4da27] ON [analysis_capture] ([organization_id]);
GO
CREATE INDEX [analysis_capture_project_id_37e17cc9] ON [analysis_capture] ([project_id]);
GO
CREATE INDEX [analysis_capture_teacher_id_130d287e] ON [analysis_capture] ([teacher_id]);
GO
CREATE INDEX [analysis_capture_torch_model_id_a2c1666c] ON [analysis_capture] ([torch_model_id]);
GO
CREATE INDEX [analysis_captureshard_blob_id_afcce166] ON [analysis_captureshard] ([blob_id]);
GO
CREATE INDEX [analysis_captureshard_capture_id_7e20180a] ON [analysis_captureshard] ([capture_id]);
GO
CREATE INDEX [analysis_coder_config_blob_id_f160069b] ON [analysis_coder] ([config_blob_id]);
GO
CREATE INDEX [analysis_coder_run_id_b8a680e3] ON [analysis_coder] ([run_id]);
GO
CREATE INDEX [analysis_coder_weights_blob_id_98369a9e] ON [analysis_coder] ([weights_blob_id]);
GO
CREATE INDEX [analysis_coderexport_blob_id_3f4372b0] ON [analysis_coderexport] ([blob_id]);
GO
CREATE INDEX [analysis_coderexport_created_by_id_14dcbb83] ON [analysis_coderexport] ([created_by_id]);
GO
CREATE INDEX [analysis_coderexport_job_id_b0d898bb] ON [analysis_coderexport] ([job_id]);
GO
CREATE INDEX [analysis_coderexport_organization_id_0025ea61] ON [analysis_coderexport] ([organization_id]);
GO
CREATE INDEX [analysis_coderexport_run_id_eb01db32] ON [analysis_coderexport] ([run_id]);
GO
CREATE INDEX [analysis_coderrun_capture_id_76777ada] ON [analysis_coderrun] ([capture_id]);
GO
CREATE INDEX [analysis_coderrun_created_by_id_84a00451] ON [analysis_coderrun] ([created_by_id]);
GO
CREATE INDEX [analysis_coderrun_job_id_6486279b] ON [analysis_coderrun] ([job_id]);
GO
CREATE INDEX [analysis_coderrun_organization_id_0b2d5301] ON [analysis_coderrun] ([organization_id]);
GO
CREATE INDEX [analysis_feature_coder_id_12bdba83] ON [analysis_feature] ([coder_id]);
GO
CREATE INDEX [analysis_featureneuronlink_feature_id_7f3ff8c1] ON [analysis_featureneuronlink] ([feature_id]);
GO
CREATE INDEX [auth_group_permissions_group_id_b120cbf9] ON [auth_group_permissions] ([group_id]);
GO
CREATE INDEX [auth_group_permissions_permission_id_84c5c92e] ON [auth_group_permissions] ([permission_id]);
GO
CREATE INDEX [auth_permission_content_type_id_2f476e4b] ON [auth_permission] ([content_type_id]);
GO
CREATE INDEX [auth_user_groups_group_id_97559544] ON [auth_user_groups] ([group_id]);
GO
CREATE INDEX [auth_user_groups_user_id_6a12ed8b] ON [auth_user_groups] ([user_id]);
GO
CREATE INDEX [auth_user_user_permissions_permission_id_1fbb5f2c] ON [auth_user_user_permissions] ([permission_id]);
GO
CREATE INDEX [auth_user_user_permissions_user_id_a95ead1b] ON [auth_user_user_permissions] ([user_id]);
GO
CREATE INDEX [conv_agent_recent] ON [runtime_conversation] ([agent_id], [updated_at] DESC);
GO
CREATE INDEX [distillation_build_created_by_id_70d0063a] ON [distillation_build] ([created_by_id]);
GO
CREATE INDEX [distillation_build_job_id_b51eb5d5] ON [distillation_build] ([job_id]);
GO
CREATE INDEX [distillation_build_organization_id_041d4779] ON [distillation_build] ([organization_id]);
GO
CREATE INDEX [distillation_build_recipe_id_446d92e8] ON [distillation_build] ([recipe_id]);
GO
CREATE INDEX [distillation_build_student_id_e7b12e20] ON [distillation_build] ([student_id]);
GO
CREATE INDEX [distillation_importanceanalysis_created_by_id_c070e688] ON [distillation_importanceanalysis] ([created_by_id]);
GO
CREATE INDEX [distillation_importanceanalysis_dataset_id_fa48eb32] ON [distillation_importanceanalysis] ([dataset_id]);
GO
CREATE INDEX [distillation_importanceanalysis_job_id_f10af64a] ON [distillation_importanceanalysis] ([job_id]);
GO
CREATE INDEX [distillation_importanceanalysis_organization_id_5f272fa4] ON [distillation_importanceanalysis] ([organization_id]);
GO
CREATE INDEX [distillation_importanceanalysis_project_id_fb4cc7e2] ON [distillation_importanceanalysis] ([project_id]);
GO
CREATE INDEX [distillation_importanceanalysis_report_blob_id_3f4f469b] ON [distillation_importanceanalysis] ([report_blob_id]);
GO
CREATE INDEX [distillation_importanceanalysis_teacher_id_8ec973e3] ON [distillation_importanceanalysis] ([teacher_id]);
GO
CREATE INDEX [distillation_importanceanalysis_torch_model_id_148b38a7] ON [distillation_importanceanalysis] ([torch_model_id]);
GO
CREATE INDEX [distillation_recipe_analysis_id_42573984] ON [distillation_recipe] ([analysis_id]);
GO
CREATE INDEX [distillation_recipe_approved_by_id_a7c89d1f] ON [distillation_recipe] ([approved_by_id]);
GO
CREATE INDEX [distillation_recipe_created_by_id_75d29a6c] ON [distillation_recipe] ([created_by_id]);
GO
CREATE INDEX [distillation_recipe_organization_id_2fc2178c] ON [distillation_recipe] ([organization_id]);
GO
CREATE INDEX [distillation_recipe_project_id_64c83143] ON [distillation_recipe] ([project_id]);
GO
CREATE INDEX [distillation_recipe_teacher_id_a310e47c] ON [distillation_recipe] ([teacher_id]);
GO
CREATE INDEX [django_admin_log_content_type_id_c4bce8eb] ON [django_admin_log] ([content_type_id]);
GO
CREATE INDEX [django_admin_log_user_id_c564eba6] ON [django_admin_log] ([user_id]);
GO
CREATE INDEX [django_session_expire_date_a5c62663] ON [django_session] ([expire_date]);
GO
CREATE INDEX [feature_by_frequency] ON [analysis_feature] ([coder_id], [frequency] DESC);
GO
CREATE INDEX [inference_agent_recent] ON [runtime_inferencerecord] ([agent_id], [created_at] DESC);
GO
CREATE INDEX [job_org_recent] ON [projects_job] ([organization_id], [created_at] DESC);
GO
CREATE INDEX [job_status_heartbeat] ON [projects_job] ([status], [heartbeat_at]);
GO
CREATE INDEX [projects_apitoken_organization_id_f683d3a2] ON [projects_apitoken] ([organization_id]);
GO
CREATE INDEX [projects_apitoken_user_id_a07e154c] ON [projects_apitoken] ([user_id]);
GO
CREATE INDEX [projects_dataset_created_by_id_5010053b] ON [projects_dataset] ([created_by_id]);
GO
CREATE INDEX [projects_dataset_documents_blob_id_f67783a9] ON [projects_dataset] ([documents_blob_id]);
GO
CREATE INDEX [projects_dataset_job_id_a34e5e49] ON [projects_dataset] ([job_id]);
GO
CREATE INDEX [projects_dataset_organization_id_21be7820] ON [projects_dataset] ([organization_id]);
GO
CREATE INDEX [projects_dataset_project_id_4c7b6951] ON [projects_dataset] ([project_id]);
GO
CREATE INDEX [projects_dataset_source_blob_id_5a1c4cfd] ON [projects_dataset] ([source_blob_id]);
GO
CREATE INDEX [projects_invitation_accepted_by_id_c0262014] ON [projects_invitation] ([accepted_by_id]);
GO
CREATE INDEX [projects_invitation_created_by_id_346d4c93] ON [projects_invitation] ([created_by_id]);
GO
CREATE INDEX [projects_invitation_organization_id_93192c13] ON [projects_invitation] ([organization_id]);
GO
CREATE INDEX [projects_job_created_by_id_8f2f4cda] ON [projects_job] ([created_by_id]);
GO
CREATE INDEX [projects_job_organization_id_56ebb956] ON [projects_job] ([organization_id]);
GO
CREATE INDEX [projects_job_project_id_f3780fa1] ON [projects_job] ([project_id]);
GO
CREATE INDEX [projects_job_retry_of_id_02bc8acc] ON [projects_job] ([retry_of_id]);
GO
CREATE INDEX [projects_languagemodel_created_by_id_746c6f1e] ON [projects_languagemodel] ([created_by_id]);
GO
CREATE INDEX [projects_languagemodel_derived_from_id_b9498b2e] ON [projects_languagemodel] ([derived_from_id]);
GO
CREATE INDEX [projects_languagemodel_organization_id_c31f44d0] ON [projects_languagemodel] ([organization_id]);
GO
CREATE INDEX [projects_languagemodel_project_id_32266579] ON [projects_languagemodel] ([project_id]);
GO
CREATE INDEX [projects_membership_organization_id_11097183] ON [projects_membership] ([organization_id]);
GO
CREATE INDEX [projects_membership_user_id_13374535] ON [projects_membership] ([user_id]);
GO
CREATE INDEX [projects_modelfile_blob_id_6b9f2cfd] ON [projects_modelfile] ([blob_id]);
GO
CREATE INDEX [projects_modelfile_model_id_950adf3c] ON [projects_modelfile] ([model_id]);
GO
CREATE INDEX [projects_organization_created_by_id_cc1264ce] ON [projects_organization] ([created_by_id]);
GO
CREATE INDEX [projects_project_created_by_id_c49d7b6d] ON [projects_project] ([created_by_id]);
GO
CREATE INDEX [projects_project_organization_id_c93e5ca2] ON [projects_project] ([organization_id]);
GO
CREATE INDEX [projects_project_slug_2d50067a] ON [projects_project] ([slug]);
GO
CREATE INDEX [projects_tensorrecord_file_id_101088e4] ON [projects_tensorrecord] ([file_id]);
GO
CREATE INDEX [projects_tensorrecord_model_id_6a089ba4] ON [projects_tensorrecord] ([model_id]);
GO
CREATE INDEX [projects_tensorrecord_sha256_2587ee8d] ON [projects_tensorrecord] ([sha256]);
GO
CREATE INDEX [projects_upload_blob_id_34901acf] ON [projects_upload] ([blob_id]);
GO
CREATE INDEX [projects_upload_created_by_id_075618ad] ON [projects_upload] ([created_by_id]);
GO
CREATE INDEX [projects_upload_organization_id_ed3e57a8] ON [projects_upload] ([organization_id]);
GO
CREATE INDEX [projects_upload_project_id_43ff4ce6] ON [projects_upload] ([project_id]);
GO
CREATE INDEX [runtime_agent_created_by_id_aa811a8f] ON [runtime_agent] ([created_by_id]);
GO
CREATE INDEX [runtime_agent_model_id_e9013720] ON [runtime_agent] ([model_id]);
GO
CREATE INDEX [runtime_agent_organization_id_34457941] ON [runtime_agent] ([organization_id]);
GO
CREATE INDEX [runtime_agent_project_id_f0b2d4e1] ON [runtime_agent] ([project_id]);
GO
CREATE INDEX [runtime_agent_slug_d1a1945c] ON [runtime_agent] ([slug]);
GO
CREATE INDEX [runtime_conversation_agent_id_0b04f1ae] ON [runtime_conversation] ([agent_id]);
GO
CREATE INDEX [runtime_conversation_endpoint_id_ee133d6f] ON [runtime_conversation] ([endpoint_id]);
GO
CREATE INDEX [runtime_conversation_organization_id_acd592d4] ON [runtime_conversation] ([organization_id]);
GO
CREATE INDEX [runtime_conversation_user_id_f8e625cc] ON [runtime_conversation] ([user_id]);
GO
CREATE INDEX [runtime_endpoint_baseline_id_ab4e662d] ON [runtime_endpoint] ([baseline_id]);
GO
CREATE INDEX [runtime_endpoint_candidate_id_6033b265] ON [runtime_endpoint] ([candidate_id]);
GO
CREATE INDEX [runtime_endpoint_created_by_id_c2d4cf00] ON [runtime_endpoint] ([created_by_id]);
GO
CREATE INDEX [runtime_endpoint_organization_id_f5986459] ON [runtime_endpoint] ([organization_id]);
GO
CREATE INDEX [runtime_endpoint_project_id_11b29c9a] ON [runtime_endpoint] ([project_id]);
GO
CREATE INDEX [runtime_endpoint_slug_f3954f83] ON [runtime_endpoint] ([slug]);
GO
CREATE INDEX [runtime_feedback_message_id_c2024cf0] ON [runtime_feedback] ([message_id]);
GO
CREATE INDEX [runtime_feedback_user_id_b4e9dc44] ON [runtime_feedback] ([user_id]);
GO
CREATE INDEX [runtime_inferencerecord_agent_id_f4ffad73] ON [runtime_inferencerecord] ([agent_id]);
GO
CREATE INDEX [runtime_inferencerecord_conversation_id_088ef8f0] ON [runtime_inferencerecord] ([conversation_id]);
GO
CREATE INDEX [runtime_inferencerecord_endpoint_id_5fc2a727] ON [runtime_inferencerecord] ([endpoint_id]);
GO
CREATE INDEX [runtime_inferencerecord_message_id_52186386] ON [runtime_inferencerecord] ([message_id]);
GO
CREATE INDEX [runtime_inferencerecord_model_id_99b9d64e] ON [runtime_inferencerecord] ([model_id]);
GO
CREATE INDEX [runtime_inferencerecord_organization_id_d2bc76b4] ON [runtime_inferencerecord] ([organization_id]);
GO
CREATE INDEX [runtime_inferencerecord_token_id_f35f99ce] ON [runtime_inferencerecord] ([token_id]);
GO
CREATE INDEX [runtime_inferencerecord_user_id_53894195] ON [runtime_inferencerecord] ([user_id]);
GO
CREATE INDEX [runtime_message_agent_id_5913e1e3] ON [runtime_message] ([agent_id]);
GO
CREATE INDEX [runtime_message_conversation_id_339800fd] ON [runtime_message] ([conversation_id]);
GO
CREATE INDEX [runtime_promotion_baseline_id_d2113230] ON [runtime_promotion] ([baseline_id]);
GO
CREATE INDEX [runtime_promotion_by_id_8ee5d95b] ON [runtime_promotion] ([by_id]);
GO
CREATE INDEX [runtime_promotion_candidate_id_1073ff26] ON [runtime_promotion] ([candidate_id]);
GO
CREATE INDEX [runtime_promotion_endpoint_id_5b0fa5ef] ON [runtime_promotion] ([endpoint_id]);
GO
CREATE INDEX [tensor_model_layer_comp] ON [projects_tensorrecord] ([model_id], [layer], [component]);
GO
CREATE UNIQUE INDEX [auth_group_permissions_group_id_permission_id_0cd325b0_uniq] ON [auth_group_permissions] ([group_id], [permission_id]) WHERE [group_id] IS NOT NULL AND [permission_id] IS NOT NULL;
GO
CREATE UNIQUE INDEX [auth_permission_content_type_id_codename_01ab375a_uniq] ON [auth_permission] ([content_type_id], [codename]) WHERE [content_type_id] IS NOT NULL AND [codename] IS NOT NULL;
GO
CREATE UNIQUE INDEX [auth_user_groups_user_id_group_id_94350c0c_uniq] ON [auth_user_groups] ([user_id], [group_id]) WHERE [user_id] IS NOT NULL AND [group_id] IS NOT NULL;
GO
CREATE UNIQUE INDEX [auth_user_user_permissions_user_id_permission_id_14a6b632_uniq] ON [auth_user_user_permissions] ([user_id], [permission_id]) WHERE [user_id] IS NOT NULL AND [permission_id] IS NOT NULL;
GO
CREATE UNIQUE INDEX [django_content_type_app_label_model_76bd3d3b_uniq] ON [django_content_type] ([app_label], [model]) WHERE [app_label] IS NOT NULL AND [model] IS NOT NULL;
GO
COMMIT;
GO

-- The tables of mushra-web 0.1.0 before issue 27 (made from that commit's mushra_web/db.py), to test that
-- init_db brings such a database up to date without losing a row.

CREATE TABLE admin_login_failure (
	id SERIAL NOT NULL, 
	username VARCHAR(64) NOT NULL, 
	address VARCHAR(64) NOT NULL, 
	at TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_admin_login_failure_address ON admin_login_failure (address);

CREATE INDEX ix_admin_login_failure_username ON admin_login_failure (username);

CREATE TABLE admin_user (
	id SERIAL NOT NULL, 
	username VARCHAR(64) NOT NULL, 
	password_hash VARCHAR(256) NOT NULL, 
	created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (username)
);

CREATE TABLE experiment (
	id SERIAL NOT NULL, 
	slug VARCHAR(63) NOT NULL, 
	title VARCHAR(200) NOT NULL, 
	config_json TEXT NOT NULL, 
	config_sha256 VARCHAR(64) NOT NULL, 
	app_version VARCHAR(32) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	sample_rate INTEGER NOT NULL, 
	channels INTEGER NOT NULL, 
	source_run TEXT, 
	objective_rows_csv TEXT, 
	ingest_report JSON NOT NULL, 
	created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (slug)
);

CREATE TABLE meta (
	key VARCHAR(64) NOT NULL, 
	value TEXT NOT NULL, 
	PRIMARY KEY (key)
);

CREATE TABLE admin_session (
	token_hash VARCHAR(64) NOT NULL, 
	user_id INTEGER NOT NULL, 
	csrf_token VARCHAR(64) NOT NULL, 
	expires_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	PRIMARY KEY (token_hash), 
	FOREIGN KEY(user_id) REFERENCES admin_user (id) ON DELETE CASCADE
);

CREATE INDEX ix_admin_session_user_id ON admin_session (user_id);

CREATE TABLE item_use (
	experiment_id INTEGER NOT NULL, 
	item_id VARCHAR(128) NOT NULL, 
	uses INTEGER NOT NULL, 
	PRIMARY KEY (experiment_id, item_id), 
	FOREIGN KEY(experiment_id) REFERENCES experiment (id) ON DELETE CASCADE
);

CREATE TABLE participant (
	id SERIAL NOT NULL, 
	public_id VARCHAR(32) NOT NULL, 
	experiment_id INTEGER NOT NULL, 
	token_hash VARCHAR(64) NOT NULL, 
	external_id VARCHAR(128), 
	study_id VARCHAR(128), 
	crowd_session_id VARCHAR(128), 
	seed INTEGER NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	completion_code VARCHAR(32), 
	user_agent VARCHAR(400), 
	audio_env JSON NOT NULL, 
	created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	finished_at TIMESTAMP WITHOUT TIME ZONE, 
	PRIMARY KEY (id), 
	UNIQUE (experiment_id, external_id), 
	UNIQUE (public_id), 
	FOREIGN KEY(experiment_id) REFERENCES experiment (id) ON DELETE CASCADE, 
	UNIQUE (token_hash)
);

CREATE INDEX ix_participant_experiment_id ON participant (experiment_id);

CREATE TABLE stimulus (
	id SERIAL NOT NULL, 
	experiment_id INTEGER NOT NULL, 
	item_id VARCHAR(128) NOT NULL, 
	condition VARCHAR(128) NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	path TEXT NOT NULL, 
	sha256 VARCHAR(64) NOT NULL, 
	n_frames INTEGER NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (experiment_id, item_id, condition), 
	FOREIGN KEY(experiment_id) REFERENCES experiment (id) ON DELETE CASCADE
);

CREATE INDEX ix_stimulus_experiment_id ON stimulus (experiment_id);

CREATE TABLE takeover_grant (
	participant_id INTEGER NOT NULL, 
	granted_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	PRIMARY KEY (participant_id), 
	FOREIGN KEY(participant_id) REFERENCES participant (id) ON DELETE CASCADE
);

CREATE TABLE trial (
	id SERIAL NOT NULL, 
	participant_id INTEGER NOT NULL, 
	position INTEGER NOT NULL, 
	item_id VARCHAR(128) NOT NULL, 
	is_training BOOLEAN NOT NULL, 
	reference_stimulus_id INTEGER NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	n_switches INTEGER NOT NULL, 
	loop JSON NOT NULL, 
	reference_plays INTEGER NOT NULL, 
	started_at TIMESTAMP WITHOUT TIME ZONE, 
	submitted_at TIMESTAMP WITHOUT TIME ZONE, 
	PRIMARY KEY (id), 
	UNIQUE (participant_id, position), 
	FOREIGN KEY(participant_id) REFERENCES participant (id) ON DELETE CASCADE, 
	FOREIGN KEY(reference_stimulus_id) REFERENCES stimulus (id)
);

CREATE INDEX ix_trial_participant_id ON trial (participant_id);

CREATE TABLE rating (
	id SERIAL NOT NULL, 
	trial_id INTEGER NOT NULL, 
	button_index INTEGER NOT NULL, 
	stimulus_id INTEGER NOT NULL, 
	score FLOAT, 
	plays INTEGER NOT NULL, 
	listen_ms INTEGER NOT NULL, 
	n_moves INTEGER NOT NULL, 
	save_seq INTEGER NOT NULL, 
	updated_at TIMESTAMP WITHOUT TIME ZONE, 
	PRIMARY KEY (id), 
	UNIQUE (trial_id, button_index), 
	FOREIGN KEY(trial_id) REFERENCES trial (id) ON DELETE CASCADE, 
	FOREIGN KEY(stimulus_id) REFERENCES stimulus (id)
);

CREATE INDEX ix_rating_trial_id ON rating (trial_id);

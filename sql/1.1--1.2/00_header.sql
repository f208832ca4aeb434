/* datastreams--1.1--1.2.sql: built by make from sql/1.1--1.2/NN_topic.sql, one file per subsystem */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION datastreams UPDATE TO '1.2'" to load this file. \quit

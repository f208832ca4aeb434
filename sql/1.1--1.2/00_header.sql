/* datastreams--1.1--1.2.sql: built by make from the files in sql/1.1--1.2, one per subsystem */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION datastreams UPDATE TO '1.2'" to load this file. \quit

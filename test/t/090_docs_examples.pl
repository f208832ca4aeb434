#-------------------------------------------------------------------------
#
# 090_docs_examples.pl
#	  Every SQL example in README.md and docs/*.md runs as pasted.
#
# For each file, a fresh database datastreams_demo is set up exactly as
# scripts/demo.sh sets it up (scripts/demo-setup.sql, as a superuser), and
# the file's fenced SQL blocks run in order in one psql session, as a reader
# would paste them.  The fence's info string says what a block is:
#
#   ```sql        must run without error
#   ```sql-error  must fail; its first line says how: "-- fails with 42501: ..."
#                 (the block must raise exactly that one error)
#   ```sql-norun  is not run; its first line says why:
#                 "-- not run by the docs test: needs pg_cron"
#
# Any other info string containing "sql" is refused, so an example cannot
# slip out of the test by a spelling.  A failure names the file and line.
#
# It also checks that every link stays inside the repository and reaches an
# existing file and heading, that no issue numbers are cited, and that the
# README's table of contents lists every section.
#
#-------------------------------------------------------------------------
use strict;
use warnings;

use FindBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ListenHelper qw(new_ds_node);

my $root = "$FindBin::RealBin/../..";
my $demo_db = 'datastreams_demo';

sub slurp
{
	my ($path) = @_;
	open my $f, '<', $path or die "$path: $!";
	local $/;
	return scalar <$f>;
}

# The fenced blocks of a markdown file: { kind, line (of the fence), lines
# => [ [doc line, text], ... ], state (for sql-error) }.  Fences may be
# indented (inside list items); the indentation is removed from the block.
sub blocks_of
{
	my ($file, $problems) = @_;
	my (@blocks, $open);
	my $n = 0;
	for my $line (split /\n/, slurp("$root/$file"), -1)
	{
		$n++;
		if (!$open)
		{
			next unless $line =~ /^( {0,3})```\s*(\S*)/;
			my ($indent, $info) = ($1, $2);
			$open = { info => $info, indent => length $indent, line => $n, lines => [] };
			next;
		}
		if ($line =~ /^\s*```\s*$/)
		{
			push @blocks, $open if $open->{info} =~ /sql/i;
			undef $open;
			next;
		}
		(my $text = $line) =~ s/^ {0,$open->{indent}}//;
		push @{ $open->{lines} }, [ $n, $text ];
	}
	push @$problems, "$file:$open->{line}: unterminated code fence" if $open;

	for my $b (@blocks)
	{
		my $where = "$file:$b->{line}";
		my $first = @{ $b->{lines} } ? $b->{lines}[0][1] : '';
		if ($b->{info} eq 'sql')
		{
			$b->{kind} = 'sql';
		}
		elsif ($b->{info} eq 'sql-error')
		{
			$b->{kind} = 'error';
			if ($first =~ /^--\s*fails with ([0-9A-Z]{5})\b/)
			{
				$b->{state} = $1;
			}
			else
			{
				push @$problems, "$where: a sql-error block starts with \"-- fails with <SQLSTATE>: ...\"";
			}
		}
		elsif ($b->{info} eq 'sql-norun')
		{
			$b->{kind} = 'norun';
			push @$problems, "$where: a sql-norun block starts with \"-- not run by the docs test: <why>\""
			  unless $first =~ /^--\s*not run by the docs test: \S/;
		}
		else
		{
			$b->{kind} = 'bad';
			push @$problems, "$where: unknown fence \"```$b->{info}\" (use sql, sql-error or sql-norun)";
		}
	}
	return grep { $_->{kind} eq 'sql' || $_->{kind} eq 'error' } @blocks;
}

# Runs a file's blocks in one session; returns the problems found.
sub run_blocks
{
	my ($node, $file, @blocks) = @_;
	my (@script, @origin);	# script line (from 1) => "file:line"
	my $emit = sub {
		my ($text, $origin) = @_;
		push @script, $text;
		push @origin, $origin // "$file (test harness)";
	};

	for my $i (0 .. $#blocks)
	{
		my $b = $blocks[$i];
		$emit->("\\warn \@\@block $i\@\@");
		$emit->('\set ON_ERROR_STOP 0') if $b->{kind} eq 'error';
		$emit->($_->[1], "$file:$_->[0]") for @{ $b->{lines} };
		# a block may end without a semicolon or inside a comment
		$emit->(';');
		if ($b->{kind} eq 'error')
		{
			$emit->('\set ON_ERROR_STOP 1');
			$emit->("\\warn \@\@state $i :LAST_ERROR_SQLSTATE\@\@");
		}
	}
	$emit->("\\warn \@\@end\@\@");

	my ($out, $err) = ('', '');
	my $rc = $node->psql(
		$demo_db, join("\n", @script) . "\n",
		stdout => \$out,
		stderr => \$err,
		on_error_stop => 1,
		timeout => $PostgreSQL::Test::Utils::timeout_default);

	note "psql output of $file:\n$out\n$err";

	# split stderr at the block markers
	my (%errors, %state, $current);
	for my $line (split /\n/, $err)
	{
		if ($line =~ /^\@\@block (\d+)\@\@$/)
		{
			$current = $1;
		}
		elsif ($line =~ /^\@\@state (\d+) (\S*)\@\@$/)
		{
			$state{$1} = $2;
		}
		elsif ($line =~ /^\@\@end\@\@$/)
		{
			undef $current;
		}
		elsif ($line =~ /^psql:[^:]*:(\d+): (ERROR|FATAL|PANIC):\s+(.*)/)
		{
			my ($at, $msg) = ($origin[ $1 - 1 ] // "$file:?", "$2: $3");
			push @{ $errors{ $current // 'none' } }, "$at: $msg";
		}
	}

	my @problems;
	for my $i (0 .. $#blocks)
	{
		my $b = $blocks[$i];
		my @e = @{ $errors{$i} // [] };
		if ($b->{kind} eq 'sql')
		{
			push @problems, "$file:$b->{line}: the sql block fails: @e" if @e;
		}
		elsif (@e != 1)
		{
			push @problems, "$file:$b->{line}: the sql-error block raised "
			  . scalar(@e) . " errors instead of one: @e";
		}
		elsif (($state{$i} // '') ne $b->{state})
		{
			push @problems, "$file:$b->{line}: the sql-error block failed with "
			  . ($state{$i} // '?') . ", not $b->{state}: @e";
		}
		last if @e && $b->{kind} eq 'sql';	# psql stopped there
	}
	push @problems, "$file: psql exited with $rc: " . ($err =~ s/\@\@[^\n]*\n//gr)
	  if $rc != 0 && !@problems;
	return @problems;
}

# GitHub's anchor for a heading
sub slug
{
	my ($heading) = @_;
	my $s = lc $heading;
	$s =~ s/[^\w\- ]//g;
	$s =~ tr/ /-/;
	return $s;
}

sub anchors_of
{
	my ($file) = @_;
	my %seen;
	my @anchors;
	my $in_fence = 0;
	for my $line (split /\n/, slurp("$root/$file"))
	{
		$in_fence = !$in_fence if $line =~ /^\s*```/;
		next if $in_fence || $line !~ /^#+\s+(.*?)\s*$/;
		my $s = slug($1);
		push @anchors, $seen{$s}++ ? "$s-" . ($seen{$s} - 1) : $s;
	}
	return @anchors;
}

# Links, issue numbers, the table of contents
sub check_prose
{
	my ($file) = @_;
	my @problems;
	my $n = 0;
	my $in_fence = 0;
	(my $dir = $file) =~ s{[^/]*$}{};
	for my $line (split /\n/, slurp("$root/$file"))
	{
		$n++;
		$in_fence = !$in_fence if $line =~ /^\s*```/;
		next if $in_fence;
		push @problems, "$file:$n: cites an issue number" if $line =~ /\bissues? #?\d+/i;
		while ($line =~ /\]\(([^)\s]+)\)/g)
		{
			my $target = $1;
			if ($target =~ m{^[a-z][a-z0-9+.-]*:}i)
			{
				push @problems, "$file:$n: link outside the repository: $target";
				next;
			}
			my ($path, $anchor) = split /#/, $target, 2;
			my $to = $path eq '' ? $file : "$dir$path";
			1 while $to =~ s{(^|/)(?!\.\./)[^/]+/\.\./}{$1};
			if (!-e "$root/$to")
			{
				push @problems, "$file:$n: link to a missing file: $target";
			}
			elsif (defined $anchor && !grep { $_ eq $anchor } anchors_of($to))
			{
				push @problems, "$file:$n: link to a missing section: $target";
			}
		}
	}
	return @problems;
}

my @prose_problems;
my @files = ('README.md', map { s{^\Q$root\E/}{}r } sort glob("$root/docs/*.md"));
push @prose_problems, check_prose($_) for @files, 'CHANGELOG.md';

# every section of the README is in its table of contents
my $readme = slurp("$root/README.md");
my %in_toc = map { $_ => 1 } $readme =~ /^\s*- \[[^\]]*\]\(#([^)]+)\)/mg;
for my $anchor (anchors_of('README.md'))
{
	next if $anchor eq slug('datastreams');	# the title
	push @prose_problems, "README.md: section #$anchor is not in the table of contents"
	  unless $in_toc{$anchor};
}
is(join("\n", @prose_problems), '',
	'links stay in the repository and reach existing sections; no issue numbers; a complete table of contents');

my $node = new_ds_node('docs');
my $setup = slurp("$root/scripts/demo-setup.sql");
my $total = 0;

for my $file (@files)
{
	my @problems;
	my @blocks = blocks_of($file, \@problems);
	$total += @blocks;
	if (@blocks)
	{
		$node->safe_psql('postgres',
			"DROP DATABASE IF EXISTS $demo_db WITH (FORCE); CREATE DATABASE $demo_db");
		my ($rc, $out, $err) = $node->psql($demo_db, $setup, on_error_stop => 1);
		is($rc, 0, "$file: scripts/demo-setup.sql sets up $demo_db") or diag $err;
		push @problems, run_blocks($node, $file, @blocks);
	}
	is(join("\n", @problems), '',
		"$file: its " . scalar(@blocks) . " SQL examples run as pasted");
}
ok($total > 10, "the documentation has SQL examples ($total)");

$node->stop;
done_testing();

#!/bin/sh
echo collected
